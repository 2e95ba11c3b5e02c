/**
 * The runtime object a service builds once at startup: validated config, logger, metrics,
 * health probes, the shutdown controller, and lazily created store connections that wire
 * themselves into all of those.
 */
import { loadConfig, type ShoalConfig } from './config/index.js';
import { isShoalError, ShoalError } from './errors.js';
import { postgresCheck, redisCheck } from './lifecycle/checks.js';
import { createHealth, type Health } from './lifecycle/health.js';
import { createShutdown, type Shutdown } from './lifecycle/shutdown.js';
import { createLogger, type Logger } from './observe/log.js';
import { createMetrics, type Metrics } from './observe/metrics.js';
import { createPool, type PgPool, poolSettingsFrom } from './stores/postgres/pool.js';
import { createRedis, type RedisClient } from './stores/redis/client.js';

/** Options for {@link createShoal}. */
export interface CreateShoalOptions {
  /** Environment to read (default `process.env`). */
  env?: Record<string, string | undefined>;
  /** The service's version, shown on the health probes. */
  version?: string;
  /** Bring your own pino logger; by default one is made from the config. */
  logger?: Logger;
  /** Overrides `SHOAL_SERVICE`. */
  service?: string;
  /** Called with the exit code at the end of shutdown (default `process.exit`). */
  exit?: (code: number) => void;
}

/** Everything a service needs at runtime; see {@link createShoal}. */
export interface ShoalRuntime {
  readonly config: ShoalConfig;
  readonly service: string;
  readonly instanceId: string;
  readonly version: string | undefined;
  readonly log: Logger;
  readonly metrics: Metrics;
  readonly health: Health;
  readonly shutdown: Shutdown;
  /**
   * The shared Redis client from `REDIS_URL`, created on first call. Adds a required `redis`
   * health check, Redis metrics and a close on shutdown. Throws `config.invalid` without REDIS_URL.
   */
  redis(): RedisClient;
  /**
   * The PostgreSQL pool from `DATABASE_URL` and `DB_POOL_*`, created on first call. Adds a
   * required `postgres` health check, pool metrics and a close on shutdown.
   */
  pg(): PgPool;
}

/**
 * Build the runtime. Throws the `config.invalid` {@link ShoalError} (one message, every bad
 * variable) when the environment is wrong; wrap the entry point in {@link runMain} to turn that
 * into one line on stderr and a non-zero exit.
 *
 * @example
 * const shoal = createShoal({ version: '1.4.0' });
 * const redis = shoal.redis();
 * shoal.log.info({ port: shoal.config.port }, 'configured');
 */
export function createShoal(options: CreateShoalOptions = {}): ShoalRuntime {
  const config = loadConfig(options.env ?? process.env);
  const service = options.service ?? config.service;
  const instanceId = config.instanceId;
  const log = options.logger ?? createLogger({ service, instanceId, level: config.logLevel });
  const metrics = createMetrics({ service, instanceId });
  const health = createHealth({
    service,
    instanceId,
    version: options.version,
    intervalMs: config.health.intervalMs,
    timeoutMs: config.health.timeoutMs,
    logger: log,
  });
  const shutdown = createShutdown({
    logger: log,
    health,
    drainDelayMs: config.shutdown.drainDelayMs,
    timeoutMs: config.shutdown.timeoutMs,
    exit: options.exit,
  });

  let redis: RedisClient | undefined;
  let pool: PgPool | undefined;

  return {
    config,
    service,
    instanceId,
    version: options.version,
    log,
    metrics,
    health,
    shutdown,
    redis() {
      if (redis) return redis;
      if (!config.redisUrl) {
        throw new ShoalError('config.invalid', 'REDIS_URL: expected a Redis URL, got nothing (unset)');
      }
      const client = createRedis(config.redisUrl, { connectionName: `${service}/${instanceId}` });
      // ioredis emits an error per failed reconnect; log the first of each outage only.
      let down = false;
      client.on('error', (err: Error) => {
        if (down) return;
        down = true;
        log.warn({ store: 'redis', err: err.message }, 'redis connection error');
      });
      client.on('ready', () => {
        if (down) log.info({ store: 'redis' }, 'redis connection restored');
        down = false;
      });
      health.add(redisCheck(client));
      metrics.observeRedis(client);
      shutdown.register('redis', async () => {
        if (client.status === 'end') return;
        // quit() settles on the reply; the connection is gone only at 'end'.
        const ended = new Promise<void>((resolve) => client.once('end', () => resolve()));
        await client.quit().catch(() => client.disconnect());
        await ended;
      });
      redis = client;
      return client;
    },
    pg() {
      if (pool) return pool;
      if (!config.databaseUrl) {
        throw new ShoalError(
          'config.invalid',
          'DATABASE_URL: expected a postgres:// or postgresql:// URL, got nothing (unset)',
        );
      }
      const p = createPool(config.databaseUrl, poolSettingsFrom(config), (err) =>
        log.warn({ store: 'postgres', err: err.message }, 'idle postgres connection failed'),
      );
      health.add(postgresCheck(p));
      metrics.observePgPool(p);
      shutdown.register('postgres', () => p.end());
      pool = p;
      return p;
    },
  };
}

/** Options for {@link runMain}. */
export interface RunMainOptions {
  /** Where the failure message goes (default `process.stderr`). */
  stderr?: { write(chunk: string): unknown };
  /** Default `process.exit`. */
  exit?: (code: number) => void;
}

/** Exit code for a configuration error (EX_CONFIG from sysexits.h): not worth a restart loop. */
export const EXIT_CONFIG = 78;

/**
 * Run a service's entry point. A `config.invalid` error becomes its one message on stderr and
 * exit code 78; any other startup error prints its stack and exits 1.
 *
 * @example
 * runMain(async () => {
 *   const shoal = createShoal();
 *   await serve(app, shoal);
 * });
 */
export async function runMain(main: () => unknown, options: RunMainOptions = {}): Promise<void> {
  const stderr = options.stderr ?? process.stderr;
  const exit = options.exit ?? ((code: number) => process.exit(code));
  try {
    await main();
  } catch (err) {
    if (isShoalError(err, 'config.invalid')) {
      stderr.write(`${err.message}\n`);
      exit(EXIT_CONFIG);
      return;
    }
    stderr.write(`startup failed: ${err instanceof Error ? (err.stack ?? err.message) : String(err)}\n`);
    exit(1);
  }
}
