/**
 * Ready-made health checks for the stores the toolkit uses. Each returns a {@link HealthCheck}
 * for `health.add()`; the health runner measures latency and enforces the timeout.
 */
import { type IntervalHistogram, monitorEventLoopDelay } from 'node:perf_hooks';
import type { CheckResult, HealthCheck } from '../contracts/index.js';
import type { PgPool } from '../stores/postgres/pool.js';
import type { RedisClient } from '../stores/redis/client.js';

/** Common options of the built-in checks. */
export interface CheckOptions {
  /** Name shown on the probes (default: the dependency, e.g. `redis`). */
  name?: string;
  /** Whether a failure fails readiness (default true for stores). */
  required?: boolean;
}

function aborted(signal: AbortSignal): Promise<never> {
  return new Promise((_, reject) => {
    const fail = () => reject(new Error('aborted'));
    if (signal.aborted) fail();
    else signal.addEventListener('abort', fail, { once: true });
  });
}

/**
 * Redis PING. Fails when the client is not connected (commands fail fast rather than queue).
 *
 * @example
 * health.add(redisCheck(redis));
 */
export function redisCheck(client: RedisClient, options: CheckOptions = {}): HealthCheck {
  return {
    name: options.name ?? 'redis',
    required: options.required ?? true,
    async run(signal): Promise<CheckResult> {
      // Commands fail fast while disconnected; give a (re)connect in progress the check's time.
      if (client.status !== 'ready') {
        await new Promise<void>((resolve) => {
          const done = () => {
            signal.removeEventListener('abort', done);
            client.off('ready', done);
            resolve();
          };
          client.once('ready', done);
          signal.addEventListener('abort', done, { once: true });
        });
        // status changes in the await above; re-read it through a widened type
        const status: string = client.status;
        if (status !== 'ready') {
          return {
            ok: false,
            message: `not connected (${status})`,
            detail: { connection: status },
          };
        }
      }
      const reply = await Promise.race([client.ping(), aborted(signal)]);
      return {
        ok: reply === 'PONG',
        detail: { connection: client.status },
        message: reply === 'PONG' ? undefined : `unexpected PING reply ${String(reply)}`,
      };
    },
  };
}

/**
 * PostgreSQL `SELECT 1` plus pool usage (total / idle / waiting). Note that the query waits
 * for a pooled connection like any other, so a saturated pool shows up as a slow or timed-out
 * check; the pool numbers in `detail` say which it was.
 *
 * @example
 * health.add(postgresCheck(pool));
 */
export function postgresCheck(pool: PgPool, options: CheckOptions = {}): HealthCheck {
  return {
    name: options.name ?? 'postgres',
    required: options.required ?? true,
    async run(signal): Promise<CheckResult> {
      const usage = () => ({ total: pool.totalCount, idle: pool.idleCount, waiting: pool.waitingCount });
      const before = usage();
      try {
        await Promise.race([pool.query('SELECT 1'), aborted(signal)]);
      } catch (err) {
        return { ok: false, message: (err as Error).message, detail: { pool: before } };
      }
      return { ok: true, detail: { pool: usage() } };
    },
  };
}

/** Options of {@link eventLoopCheck}. */
export interface EventLoopCheckOptions extends CheckOptions {
  /** Fail when the event-loop delay p99 over the last interval exceeds this (ms). Default 500. */
  maxP99Ms?: number;
  /** Where to read the p99 (ms); by default the check keeps its own histogram. */
  p99Ms?: () => number;
}

/**
 * Event-loop delay p99 since the previous run; optional by default (reports `warn`), because a
 * busy instance is still able to serve and removing it would push its load onto the others.
 *
 * @example
 * health.add(eventLoopCheck({ maxP99Ms: 200 }));
 */
export function eventLoopCheck(options: EventLoopCheckOptions = {}): HealthCheck {
  const max = options.maxP99Ms ?? 500;
  let histogram: IntervalHistogram | undefined;
  return {
    name: options.name ?? 'eventLoop',
    required: options.required ?? false,
    async run(): Promise<CheckResult> {
      let p99: number;
      if (options.p99Ms) p99 = options.p99Ms();
      else {
        if (histogram === undefined) {
          histogram = monitorEventLoopDelay({ resolution: 10 });
          histogram.enable();
        }
        p99 = histogram.count > 0 ? histogram.percentile(99) / 1e6 : 0;
        histogram.reset();
      }
      p99 = Math.round(p99 * 100) / 100;
      return {
        ok: p99 <= max,
        detail: { p99_ms: p99, max_p99_ms: max },
        message: p99 <= max ? undefined : `event-loop delay p99 ${p99} ms > ${max} ms`,
      };
    },
  };
}
