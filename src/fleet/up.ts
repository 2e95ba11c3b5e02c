/**
 * `shoal up`: resolve resources, start each service's balancer and replicas in dependency order,
 * expose the control channel, and on stop tear everything down in reverse order.
 */
import type { Writable } from 'node:stream';
import type { Logger } from '../contracts/index.js';
import { isShoalError, ShoalError } from '../errors.js';
import type { ResolvedStore } from '../stores/resolve.js';
import { type Balancer, createBalancer } from './balancer/index.js';
import {
  type ControlServer,
  type FleetControl,
  type FleetStatus,
  type ResourceStatus,
  removeStateFile,
  STATE_DIR,
  startControlServer,
  writeStateFile,
} from './control.js';
import { type LoadedConfig, loadFleetConfig } from './load-config.js';
import { createLogSink, type LogSink } from './logs.js';
import type { FleetModel, ServiceModel } from './model.js';
import { renderTable } from './ps.js';
import { rollingRestart } from './rolling.js';
import { PortAllocator, ServiceSupervisor } from './supervisor.js';

/** Options for {@link startFleet}. */
export interface StartFleetOptions {
  /** Config file or directory; default: search the working directory. */
  config?: string;
  /** Working directory for config lookup (default process.cwd()). */
  cwd?: string;
  /** Replica count overrides by service name (`--replicas api=5`). */
  replicas?: Record<string, number>;
  /** Where merged logs and tables go (default a sink on process.stdout). */
  logs?: LogSink;
  /** Environment replicas inherit and resources are resolved from (default process.env). */
  env?: Record<string, string | undefined>;
}

interface RunningService {
  model: ServiceModel;
  url: string;
  balancer: Balancer;
  supervisor: ServiceSupervisor;
}

interface RunningResource {
  name: 'redis' | 'postgres';
  store: ResolvedStore;
  /** The URL with its password hidden, for logs and status. */
  shownUrl: string;
}

function envName(name: string): string {
  return name.toUpperCase().replace(/[^A-Z0-9]/g, '_');
}

function balancerLogger(logs: LogSink, service: string): Logger {
  const write = (level: string) => (obj: object, msg?: string) => {
    const detail = Object.entries(obj as Record<string, unknown>)
      .filter(([, v]) => v !== undefined && typeof v !== 'object')
      .map(([k, v]) => `${k}=${String(v)}`)
      .join(' ');
    logs.fleet(`balancer ${service} ${level}: ${msg ?? ''}${detail ? ` (${detail})` : ''}`);
  };
  const logger: Logger = {
    info: () => {},
    debug: () => {},
    warn: write('warn'),
    error: write('error'),
    child: () => logger,
  };
  return logger;
}

/**
 * A running fleet. Create with {@link startFleet}; stop with {@link Fleet.stop}.
 *
 * @example
 * const fleet = await startFleet({ config: 'shoal.config.ts' });
 * console.log(fleet.urls()); // { api: 'http://127.0.0.1:8080' }
 * await fleet.restart('api', console.log);
 * await fleet.stop();
 */
export class Fleet implements FleetControl {
  readonly config: LoadedConfig;
  readonly stateFile: string;
  private readonly logs: LogSink;
  private readonly services: RunningService[] = [];
  private readonly resources: RunningResource[] = [];
  private readonly supervisors = new Map<string, ServiceSupervisor>();
  private control: ControlServer | undefined;
  private stopping: Promise<void> | undefined;
  private halted = false;
  private halt: () => void = () => {};
  private readonly haltSignal = new Promise<void>((r) => {
    this.halt = r;
  });
  private booting: Promise<void> | undefined;
  private readonly startedAt = new Date();

  /** @internal use {@link startFleet} */
  constructor(config: LoadedConfig, logs: LogSink) {
    this.config = config;
    this.logs = logs;
    this.stateFile = `${config.dir}/${STATE_DIR}/fleet.json`;
  }

  /**
   * Start resources and services; on error, everything already started is stopped and the error
   * rethrown. A {@link Fleet.stop} during start interrupts it.
   */
  async start(env: Record<string, string | undefined> = process.env): Promise<void> {
    this.booting = this.boot(env);
    try {
      await this.booting;
    } catch (err) {
      await this.stop();
      throw err;
    }
  }

  private async boot(env: Record<string, string | undefined>): Promise<void> {
    const { model } = this.config;
    const shared: Record<string, string> = {};
    await this.startResources(model, env, shared);
    const ports = new PortAllocator();
    for (const s of model.services) {
      if (this.halted) return;
      const balancer = createBalancer({
        service: s.name,
        port: s.port,
        host: s.host,
        strategy: s.strategy,
        ...(s.stickyCookie ? { stickyCookie: s.stickyCookie } : {}),
        ...(s.maxBodyBytes ? { maxBodyBytes: s.maxBodyBytes } : {}),
        healthPath: s.health.ready,
        healthIntervalMs: s.health.intervalMs,
        logger: balancerLogger(this.logs, s.name),
        onEvent: (e) => {
          if (e.type === 'unready' || e.type === 'ejected') {
            this.logs.fleet(`${e.backend}: ${e.type}${e.reason ? ` (${e.reason})` : ''}`);
          }
        },
      });
      let port: number;
      try {
        ({ port } = await balancer.listen());
        if (this.halted) {
          await balancer.close();
          return;
        }
      } catch (err) {
        await balancer.close().catch(() => {});
        const code = (err as NodeJS.ErrnoException).code;
        throw new ShoalError(
          'fleet.start_failed',
          code === 'EADDRINUSE'
            ? `${this.config.file}: services.${s.name}.port: port ${s.port} on ${s.host} is already in use; ` +
                'stop whatever holds it or choose another port'
            : `services.${s.name}: the balancer cannot listen on ${s.host}:${s.port}: ${(err as Error).message}`,
          { cause: err },
        );
      }
      const shownHost = s.host === '0.0.0.0' || s.host === '::' ? 'localhost' : s.host;
      const url = `http://${shownHost.includes(':') ? `[${shownHost}]` : shownHost}:${port}`;
      const env2: Record<string, string> = { ...shared };
      for (const dep of s.dependsOn) {
        const depService = this.services.find((r) => r.model.name === dep);
        if (depService) {
          env2[`${envName(dep)}_URL`] = depService.url;
          env2[`services__${dep}__http__0`] = depService.url;
        }
      }
      const supervisor = new ServiceSupervisor({
        service: s,
        dir: this.config.dir,
        balancer,
        env: env2,
        logs: this.logs,
        ports,
        baseEnv: env,
      });
      this.services.push({ model: s, url, balancer, supervisor });
      this.supervisors.set(s.name, supervisor);
      this.logs.fleet(`${s.name}: starting ${s.replicas} replica(s) behind ${url}`);
      const ready = await Promise.race([supervisor.start(), this.haltSignal.then(() => 0)]);
      if (this.halted) return;
      if (ready === 0) {
        this.logs.fleet(`${s.name}: no replica became ready; its balancer answers 503 until one does`);
      } else {
        this.logs.fleet(`${s.name}: ${ready}/${s.replicas} replica(s) ready`);
      }
    }
    this.control = await startControlServer(this);
    if (this.halted) return;
    writeStateFile(this.stateFile, {
      version: 1,
      pid: process.pid,
      name: model.name ?? 'fleet',
      configFile: this.config.file,
      startedAt: this.startedAt.toISOString(),
      control: { url: this.control.url, token: this.control.token },
      services: this.services.map((s) => ({ name: s.model.name, url: s.url })),
    });
  }

  private async startResources(
    model: FleetModel,
    env: Record<string, string | undefined>,
    shared: Record<string, string>,
  ): Promise<void> {
    const { redis, postgres } = model.resources;
    if (!redis && !postgres) return;
    const { resolveRedis, resolvePostgres, redactUrl } = await import('../stores/resolve.js');
    const log = (line: string) => this.logs.fleet(line);
    if (redis) {
      const store = await resolveRedis({ env, log, ...(redis.url ? { url: redis.url } : {}) });
      const shownUrl = redactUrl(store.url);
      this.resources.push({ name: 'redis', store, shownUrl });
      if (this.halted) return;
      shared['REDIS_URL'] = store.url;
      this.logs.fleet(`redis: ${shownUrl} (${store.source})`);
    }
    if (postgres) {
      const store = await resolvePostgres({
        env,
        log,
        allowPglite: postgres.allowPglite,
        ...(postgres.url ? { url: postgres.url } : {}),
      });
      const shownUrl = redactUrl(store.url);
      this.resources.push({ name: 'postgres', store, shownUrl });
      if (this.halted) return;
      shared['DATABASE_URL'] = store.url;
      shared['POSTGRES_URL'] = store.url;
      this.logs.fleet(
        `postgres: ${shownUrl} (${store.source})` +
          (store.source === 'pglite' ? ' - embedded PGlite: development only, data is not kept' : ''),
      );
    }
  }

  /** Public URL of each service's balancer. */
  urls(): Record<string, string> {
    return Object.fromEntries(this.services.map((s) => [s.model.name, s.url]));
  }

  /** Pids of every live replica. */
  pids(): number[] {
    return this.services.flatMap((s) => s.supervisor.pids());
  }

  /** A snapshot of every service, replica and resource. */
  status(): FleetStatus {
    const resources: ResourceStatus[] = this.resources.map((r) => ({
      name: r.name,
      url: r.shownUrl,
      source: r.store.source,
    }));
    return {
      name: this.config.model.name ?? 'fleet',
      pid: process.pid,
      startedAt: this.startedAt.toISOString(),
      configFile: this.config.file,
      resources,
      services: this.services.map((s) => ({
        name: s.model.name,
        url: s.url,
        replicas: s.supervisor.status(),
      })),
    };
  }

  /** Rolling restart of one service (see rolling.ts); progress also goes to the merged log. */
  async restart(service: string, progress: (message: string) => void = () => {}): Promise<void> {
    if (this.halted) throw new ShoalError('fleet.not_running', 'the fleet is shutting down');
    await rollingRestart(this.supervisors, service, (m) => {
      this.logs.fleet(m);
      progress(m);
    });
  }

  /**
   * Stop everything in reverse order: control channel, then each service (balancer, then replicas:
   * SIGTERM, wait, SIGKILL) from the last started to the first, then resources. Idempotent.
   */
  stop(): Promise<void> {
    this.stopping ??= (async () => {
      this.halted = true;
      this.halt();
      await this.booting?.catch(() => {});
      removeStateFile(this.stateFile);
      await this.control?.close().catch(() => {});
      for (const s of [...this.services].reverse()) {
        await s.balancer.close().catch(() => {});
        await s.supervisor.stop();
      }
      for (const r of [...this.resources].reverse()) {
        await r.store.stop().catch((err: unknown) => {
          this.logs.fleet(`${r.name}: stop failed: ${(err as Error).message}`);
        });
      }
    })();
    return this.stopping;
  }

  /** Last resort: SIGKILL every replica now (synchronous; safe in an exit handler). */
  kill(): void {
    for (const s of this.services) s.supervisor.kill();
    removeStateFile(this.stateFile);
  }
}

async function prepareFleet(options: StartFleetOptions, logs: LogSink): Promise<Fleet> {
  const cwd = options.cwd ?? process.cwd();
  const loaded = await loadFleetConfig(options.config, cwd);
  for (const [name, n] of Object.entries(options.replicas ?? {})) {
    const s = loaded.model.services.find((x) => x.name === name);
    if (!s) {
      throw new ShoalError(
        'fleet.unknown_service',
        `--replicas ${name}=${n}: no service ${JSON.stringify(name)} in ${loaded.file}; services: ${loaded.model.services
          .map((x) => x.name)
          .join(', ')}`,
      );
    }
    s.replicas = n;
  }
  return new Fleet(loaded, logs);
}

/**
 * Load the config and start the fleet: resources, then services in dependency order, each
 * waiting until its replicas are ready (or crash-looping). On a startup error everything already
 * started is stopped before the error is rethrown.
 *
 * @example
 * const fleet = await startFleet({ config: 'examples/orders', replicas: { api: 2 } });
 */
export async function startFleet(options: StartFleetOptions = {}): Promise<Fleet> {
  const fleet = await prepareFleet(options, options.logs ?? createLogSink());
  await fleet.start(options.env ?? process.env);
  return fleet;
}

/** Options for {@link runUp}. */
export interface RunUpOptions extends StartFleetOptions {
  out?: Writable & { isTTY?: boolean };
}

/**
 * The `shoal up` command: start the fleet, print URLs and the status table, stream merged logs,
 * and stop everything on SIGINT/SIGTERM/SIGHUP (a second signal kills replicas immediately).
 * Resolves with the process exit code.
 *
 * @example
 * process.exitCode = await runUp({ config: 'shoal.config.ts' });
 */
export async function runUp(options: RunUpOptions = {}): Promise<number> {
  const out = options.out ?? process.stdout;
  const logs = options.logs ?? createLogSink({ out });
  let fleet: Fleet | undefined;
  let signals = 0;
  let interrupted: () => void = () => {};
  const interruptedP = new Promise<void>((r) => {
    interrupted = r;
  });
  const onSignal = (sig: NodeJS.Signals) => {
    signals++;
    if (signals === 1) {
      logs.fleet(`${sig}: stopping the fleet (send it again to kill replicas now)`);
      interrupted();
      void fleet?.stop();
    } else {
      logs.fleet(`${sig} again: killing replicas`);
      fleet?.kill();
      process.exit(130);
    }
  };
  const onExit = () => fleet?.kill();
  process.on('SIGINT', onSignal);
  process.on('SIGTERM', onSignal);
  process.on('SIGHUP', onSignal);
  process.on('exit', onExit);
  try {
    fleet = await prepareFleet(options, logs);
    if (signals > 0) return 0;
    await fleet.start(options.env ?? process.env);
    if (signals === 0) {
      const urls = fleet.urls();
      const lines = Object.entries(urls).map(([name, url]) => `  ${name.padEnd(12)} ${url}`);
      logs.raw(`\nShoal fleet "${fleet.config.model.name}" is up:\n${lines.join('\n')}\n`);
      logs.raw(renderTable(fleet.status().services.flatMap((s) => s.replicas)));
      logs.raw(`control: shoal ps | shoal restart <service>   (state in ${fleet.stateFile}); Ctrl-C stops\n`);
    }
    await interruptedP;
    await fleet.stop();
    logs.fleet('stopped; all replicas exited');
    return 0;
  } catch (err) {
    if (isShoalError(err)) logs.raw(`shoal: ${err.message}`);
    else logs.raw(`shoal: ${(err as Error).stack ?? String(err)}`);
    return 1;
  } finally {
    process.off('SIGINT', onSignal);
    process.off('SIGTERM', onSignal);
    process.off('SIGHUP', onSignal);
    process.off('exit', onExit);
  }
}
