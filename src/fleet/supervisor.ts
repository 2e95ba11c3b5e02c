/**
 * The replicas of one service: starting them as child processes, registering them with the
 * service's balancer, restarting crashes with exponential backoff, giving up on a crash loop,
 * and rolling restarts that never leave the service without a ready replica.
 *
 * Each replica runs in its own process group, so a signal reaches the whole tree the command
 * started (e.g. `npm run x` -> sh -> node) and Ctrl-C in the terminal reaches only `shoal up`,
 * which then stops replicas in order instead of having them race their own shutdown.
 */
import { type ChildProcess, spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { resolve } from 'node:path';
import { ShoalError } from '../errors.js';
import { freePort } from '../util/net.js';
import type { Balancer } from './balancer/index.js';
import type { LogSink } from './logs.js';
import type { ServiceModel } from './model.js';

/** Lifecycle of one replica slot as shown by `shoal ps`. */
export type ReplicaState =
  | 'starting'
  | 'running'
  | 'draining'
  | 'stopping'
  | 'backoff'
  | 'crash-looping'
  | 'stopped';

/** One row of fleet status: a replica process, or an empty slot waiting to restart. */
export interface ReplicaStatus {
  service: string;
  replica: number;
  id: string | undefined;
  pid: number | undefined;
  port: number | undefined;
  state: ReplicaState;
  ready: boolean;
  inFlight: number;
  requests: number;
  failures: number;
  restarts: number;
  uptimeMs: number | undefined;
  /** How the previous process of this slot ended, e.g. `code 1` or `signal SIGKILL`. */
  lastExit: string | undefined;
}

interface Exit {
  code: number | null;
  signal: NodeJS.Signals | null;
}

interface Proc {
  id: string;
  index: number;
  port: number;
  child: ChildProcess;
  pid: number | undefined;
  startedAt: number;
  state: ReplicaState;
  /** Set when the fleet itself stops this process; its exit is then not a crash. */
  intentional: boolean;
  exited: boolean;
  exit: Promise<Exit>;
}

interface Slot {
  index: number;
  current: Proc | undefined;
  crashes: number[];
  restarts: number;
  state: 'active' | 'backoff' | 'crash-looping';
  timer: NodeJS.Timeout | undefined;
  /** A rolling restart is replacing this slot's process; crash handling must not start another. */
  rolling: boolean;
  lastExit: string | undefined;
  settled: Promise<void>;
  settle: () => void;
}

/** Hands out free loopback ports, never one that a live replica of this fleet holds. */
export class PortAllocator {
  private readonly used = new Set<number>();

  /**
   * Reserve a free port.
   *
   * @example
   * const port = await new PortAllocator().allocate();
   */
  async allocate(): Promise<number> {
    for (let attempt = 0; attempt < 20; attempt++) {
      const port = await freePort();
      if (port > 0 && !this.used.has(port)) {
        this.used.add(port);
        return port;
      }
    }
    throw new Error('could not find a free loopback port');
  }

  /** Give a port back once its replica has exited. */
  release(port: number): void {
    this.used.delete(port);
  }
}

/** What a {@link ServiceSupervisor} needs from the fleet. */
export interface SupervisorOptions {
  service: ServiceModel;
  /** Directory the service's `cwd` is relative to (the config file's directory). */
  dir: string;
  balancer: Balancer;
  /** Variables the fleet injects (resource and dependency URLs); PORT and SHOAL_* are added per replica. */
  env: Record<string, string>;
  logs: LogSink;
  ports: PortAllocator;
  /** Parent environment replicas inherit; default process.env. */
  baseEnv?: Record<string, string | undefined>;
}

const sleep = (ms: number) => new Promise<void>((r) => setTimeout(r, ms).unref());

function describeExit(e: Exit): string {
  return e.signal ? `signal ${e.signal}` : `code ${e.code}`;
}

function signalGroup(proc: Proc, signal: NodeJS.Signals): void {
  if (proc.pid === undefined) return;
  try {
    process.kill(-proc.pid, signal);
  } catch {
    try {
      proc.child.kill(signal);
    } catch {
      // already gone
    }
  }
}

/**
 * Runs and watches the replicas of one service.
 *
 * @example
 * const sup = new ServiceSupervisor({ service, dir, balancer, env: {}, logs, ports: new PortAllocator() });
 * await sup.start();
 * await sup.rollingRestart((msg) => console.log(msg));
 * await sup.stop();
 */
export class ServiceSupervisor {
  readonly service: ServiceModel;
  private readonly opts: SupervisorOptions;
  private readonly slots: Slot[] = [];
  private readonly procs = new Set<Proc>();
  private stopping = false;
  private rollInProgress = false;

  constructor(opts: SupervisorOptions) {
    this.opts = opts;
    this.service = opts.service;
    for (let index = 0; index < opts.service.replicas; index++) {
      let settle!: () => void;
      const settled = new Promise<void>((r) => {
        settle = r;
      });
      this.slots.push({
        index,
        current: undefined,
        crashes: [],
        restarts: 0,
        state: 'active',
        timer: undefined,
        rolling: false,
        lastExit: undefined,
        settled,
        settle,
      });
    }
  }

  /**
   * Start every replica and wait until each is ready or has been given up on as crash-looping.
   * Resolves with the number of ready replicas.
   */
  async start(): Promise<number> {
    await Promise.all(this.slots.map((slot) => this.startSlot(slot)));
    await Promise.all(this.slots.map((s) => s.settled));
    return this.readyCount();
  }

  /** How many replicas are running and ready. */
  readyCount(): number {
    return this.slots.filter((s) => s.current?.state === 'running').length;
  }

  private async launch(slot: Slot): Promise<Proc> {
    const s = this.service;
    const port = await this.opts.ports.allocate();
    if (this.stopping) {
      this.opts.ports.release(port);
      throw new Error('the fleet is stopping');
    }
    const id = `${s.name}-${slot.index}-${randomBytes(3).toString('hex')}`;
    const env: Record<string, string> = {};
    for (const [k, v] of Object.entries(this.opts.baseEnv ?? process.env)) if (v !== undefined) env[k] = v;
    env['HOST'] = '127.0.0.1';
    env['SHOAL_SERVICE'] = s.name;
    if (s.drainDelayMs !== undefined) env['SHOAL_DRAIN_DELAY'] = `${s.drainDelayMs}ms`;
    Object.assign(env, s.env, this.opts.env, {
      PORT: String(port),
      SHOAL_INSTANCE_ID: id,
      SHOAL_REPLICA_INDEX: String(slot.index),
      SHOAL_REPLICAS: String(s.replicas),
    });
    const [cmd, ...args] = s.command;
    const exe = cmd === 'node' ? process.execPath : cmd!;
    const child = spawn(exe, args, {
      cwd: resolve(this.opts.dir, s.cwd ?? '.'),
      env,
      stdio: ['ignore', 'pipe', 'pipe'],
      detached: true,
    });
    let resolveExit!: (e: Exit) => void;
    const proc: Proc = {
      id,
      index: slot.index,
      port,
      child,
      pid: child.pid,
      startedAt: Date.now(),
      state: 'starting',
      intentional: false,
      exited: false,
      exit: new Promise<Exit>((r) => {
        resolveExit = r;
      }),
    };
    this.procs.add(proc);
    const colorKey = `${s.name}-${slot.index}`;
    if (child.stdout) this.opts.logs.attach(id, child.stdout, colorKey);
    if (child.stderr) this.opts.logs.attach(id, child.stderr, colorKey);
    const finish = (e: Exit) => {
      if (proc.exited) return;
      proc.exited = true;
      this.procs.delete(proc);
      this.opts.ports.release(port);
      this.opts.balancer.removeBackend(id);
      resolveExit(e);
      this.onExit(slot, proc, e);
    };
    child.once('exit', (code, signal) => finish({ code, signal }));
    child.once('error', (err) => {
      this.opts.logs.fleet(`${id}: cannot start ${JSON.stringify(s.command.join(' '))}: ${err.message}`);
      if (child.pid === undefined) finish({ code: 127, signal: null });
    });
    if (child.pid !== undefined) {
      this.opts.balancer.addBackend({ id, host: '127.0.0.1', port });
    }
    return proc;
  }

  /** Wait until the balancer sees `proc` ready; rejects if it exits or the startup timeout passes. */
  private async waitReady(proc: Proc): Promise<void> {
    const timeout = this.service.health.startupTimeoutMs;
    const exited = proc.exit.then((e) => {
      throw new Error(`exited (${describeExit(e)}) before it was ready`);
    });
    exited.catch(() => {});
    try {
      await Promise.race([this.opts.balancer.waitReady(proc.id, timeout), exited]);
    } catch (err) {
      if (proc.exited) throw new Error(`exited (${describeExit(await proc.exit)}) before it was ready`);
      throw new Error(`not ready within ${timeout}ms (${(err as Error).message})`);
    }
  }

  private async startSlot(slot: Slot): Promise<void> {
    slot.timer = undefined;
    if (this.stopping) return;
    slot.state = 'active';
    let proc: Proc;
    try {
      proc = await this.launch(slot);
    } catch (err) {
      this.opts.logs.fleet(`${this.service.name}-${slot.index}: cannot start: ${(err as Error).message}`);
      this.recordCrash(slot, `cannot start: ${(err as Error).message}`);
      return;
    }
    slot.current = proc;
    this.waitReady(proc).then(
      () => {
        if (proc.exited) return;
        proc.state = 'running';
        this.opts.logs.fleet(`${proc.id} ready (pid ${proc.pid}, port ${proc.port})`);
        slot.settle();
      },
      (err: Error) => {
        if (proc.exited || proc.intentional) return;
        this.opts.logs.fleet(`${proc.id} ${err.message}; killing it`);
        slot.lastExit = err.message;
        signalGroup(proc, 'SIGKILL');
      },
    );
  }

  private onExit(slot: Slot, proc: Proc, e: Exit): void {
    // Stragglers in the replica's process group go with it.
    signalGroup(proc, 'SIGKILL');
    if (proc.intentional || this.stopping) {
      proc.state = 'stopped';
      return;
    }
    proc.state = 'stopped';
    const how = describeExit(e);
    slot.lastExit = how;
    if (slot.current !== proc) return;
    slot.current = undefined;
    this.opts.logs.fleet(`${proc.id} (pid ${proc.pid}) exited unexpectedly (${how})`);
    this.recordCrash(slot, how);
  }

  private recordCrash(slot: Slot, how: string): void {
    const { maxCrashes, windowMs, backoffMs, maxBackoffMs } = this.service.restart;
    const now = Date.now();
    slot.crashes = slot.crashes.filter((t) => now - t < windowMs);
    slot.crashes.push(now);
    if (slot.rolling) return;
    if (slot.crashes.length >= maxCrashes) {
      slot.state = 'crash-looping';
      const name = `${this.service.name}-${slot.index}`;
      this.opts.logs.fleet(
        `${name} is crash-looping: ${slot.crashes.length} crashes within ${Math.round(windowMs / 1000)}s ` +
          `(last: ${how}). Not restarting it; the other replicas keep serving. ` +
          `Fix it, then run \`shoal restart ${this.service.name}\`.`,
      );
      slot.settle();
      return;
    }
    const delay = Math.min(maxBackoffMs, backoffMs * 2 ** (slot.crashes.length - 1));
    slot.state = 'backoff';
    this.opts.logs.fleet(
      `${this.service.name}-${slot.index}: restarting in ${delay}ms (crash ${slot.crashes.length} of ${maxCrashes} allowed within ${Math.round(windowMs / 1000)}s)`,
    );
    slot.timer = setTimeout(() => {
      slot.restarts++;
      void this.startSlot(slot);
    }, delay);
  }

  /** Send SIGTERM to a replica's process group, then SIGKILL if it outlives the stop timeout. */
  private async terminate(proc: Proc): Promise<void> {
    proc.intentional = true;
    if (proc.exited) return;
    proc.state = 'stopping';
    signalGroup(proc, 'SIGTERM');
    const deadline = this.service.stopTimeoutMs;
    const done = await Promise.race([proc.exit.then(() => true), sleep(deadline).then(() => false)]);
    if (!done) {
      this.opts.logs.fleet(`${proc.id} did not exit within ${deadline}ms of SIGTERM; sending SIGKILL`);
      signalGroup(proc, 'SIGKILL');
      await proc.exit;
    }
  }

  /**
   * Replace every replica, one at a time: start the new one (new port, new instance id), wait
   * until the balancer sees it ready, drain the old one (no new requests, wait for in-flight ones),
   * SIGTERM it and wait for it to exit. A replica that fails to become ready stops the roll and
   * leaves the old one serving. Crash-looping slots get a fresh start.
   */
  async rollingRestart(progress: (message: string) => void = () => {}): Promise<void> {
    if (this.stopping) throw new ShoalError('fleet.not_running', 'the fleet is shutting down');
    if (this.rollInProgress) {
      throw new ShoalError(
        'fleet.restart_in_progress',
        `a rolling restart of ${this.service.name} is already in progress`,
      );
    }
    this.rollInProgress = true;
    try {
      for (const slot of this.slots) {
        if (this.stopping) throw new ShoalError('fleet.not_running', 'the fleet is shutting down');
        await this.rollSlot(slot, progress);
      }
    } finally {
      this.rollInProgress = false;
    }
  }

  private async rollSlot(slot: Slot, progress: (message: string) => void): Promise<void> {
    const name = `${this.service.name}-${slot.index}`;
    if (slot.timer) clearTimeout(slot.timer);
    slot.timer = undefined;
    const old = slot.current && !slot.current.exited ? slot.current : undefined;
    if (!old) slot.crashes = [];
    slot.rolling = true;
    let started: Proc | undefined;
    try {
      started = await this.launch(slot);
      progress(`${name}: started ${started.id} (pid ${started.pid}, port ${started.port})`);
      await this.waitReady(started);
    } catch (err) {
      slot.rolling = false;
      if (started) await this.terminate(started);
      if (!old || old.exited) {
        if (slot.current === old) slot.current = undefined;
        this.recordCrash(slot, (err as Error).message);
      }
      throw new ShoalError(
        'fleet.restart_failed',
        `${name}: the new replica ${started ? started.id + ' ' : ''}failed: ${(err as Error).message}. ` +
          (old && !old.exited ? `${old.id} keeps serving. ` : '') +
          'Rolling restart stopped.',
      );
    }
    const fresh = started;
    fresh.state = 'running';
    slot.current = fresh;
    slot.crashes = [];
    slot.restarts++;
    slot.state = 'active';
    slot.rolling = false;
    slot.settle();
    progress(`${name}: ${fresh.id} is ready`);
    // Normally just the old process; also any process a crash restart started meanwhile.
    const retiring = [...this.procs].filter((p) => p.index === slot.index && p !== fresh && !p.exited);
    await Promise.all(retiring.map((p) => this.retire(p, name, progress)));
  }

  /** Stop routing to a replica, wait for its in-flight requests (bounded), then stop it. */
  private async retire(proc: Proc, name: string, progress: (message: string) => void): Promise<void> {
    proc.intentional = true;
    proc.state = 'draining';
    const drained = await Promise.race([
      this.opts.balancer.drainBackend(proc.id).then(
        () => true,
        () => true,
      ),
      sleep(this.service.stopTimeoutMs).then(() => false),
    ]);
    if (!drained) {
      progress(`${name}: ${proc.id} still had requests in flight after ${this.service.stopTimeoutMs}ms`);
    }
    this.opts.balancer.removeBackend(proc.id);
    await this.terminate(proc);
    progress(`${name}: ${proc.id} drained and stopped (${describeExit(await proc.exit)})`);
  }

  /** Current status rows, one per live process (two per slot during a rolling restart). */
  status(): ReplicaStatus[] {
    const stats = new Map(this.opts.balancer.stats().map((st) => [st.id, st]));
    const now = Date.now();
    const rows: ReplicaStatus[] = [];
    for (const slot of this.slots) {
      const procs = [...this.procs]
        .filter((p) => p.index === slot.index)
        .sort((a, b) => a.startedAt - b.startedAt);
      if (procs.length === 0) {
        rows.push({
          service: this.service.name,
          replica: slot.index,
          id: undefined,
          pid: undefined,
          port: undefined,
          state: slot.state === 'active' ? (this.stopping ? 'stopped' : 'starting') : slot.state,
          ready: false,
          inFlight: 0,
          requests: 0,
          failures: 0,
          restarts: slot.restarts,
          uptimeMs: undefined,
          lastExit: slot.lastExit,
        });
        continue;
      }
      for (const p of procs) {
        const st = stats.get(p.id);
        rows.push({
          service: this.service.name,
          replica: slot.index,
          id: p.id,
          pid: p.pid,
          port: p.port,
          state: p.state,
          ready: Boolean(st?.ready) && p.state !== 'draining' && p.state !== 'stopping',
          inFlight: st?.inFlight ?? 0,
          requests: st?.requests ?? 0,
          failures: st?.failures ?? 0,
          restarts: slot.restarts,
          uptimeMs: now - p.startedAt,
          lastExit: slot.lastExit,
        });
      }
    }
    return rows;
  }

  /** Pids of every live replica process (for shutdown checks). */
  pids(): number[] {
    return [...this.procs].map((p) => p.pid).filter((p): p is number => p !== undefined);
  }

  /** Stop every replica: SIGTERM, wait up to the stop timeout, then SIGKILL. No restarts afterwards. */
  async stop(): Promise<void> {
    this.stopping = true;
    for (const slot of this.slots) {
      if (slot.timer) clearTimeout(slot.timer);
      slot.timer = undefined;
      slot.settle();
    }
    await Promise.all([...this.procs].map((p) => this.terminate(p)));
  }

  /** Last resort (second Ctrl-C): SIGKILL every replica's process group now. */
  kill(): void {
    this.stopping = true;
    for (const slot of this.slots) if (slot.timer) clearTimeout(slot.timer);
    for (const p of this.procs) {
      p.intentional = true;
      signalGroup(p, 'SIGKILL');
    }
  }
}
