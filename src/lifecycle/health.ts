/**
 * Health probes for one instance.
 *
 * Checks run in the background on a fixed interval, each under its own timeout; the probes
 * (`live`, `ready`, `startup`, `deep`) only read the latest results, so a probe never does I/O
 * and never waits on a slow dependency. Bodies follow the `application/health+json` draft
 * (status `pass` / `warn` / `fail`).
 */
import { type IntervalHistogram, monitorEventLoopDelay, performance } from 'node:perf_hooks';
import type { CheckResult, HealthCheck, Logger } from '../contracts/index.js';
import { silentLogger } from '../contracts/index.js';

/** Media type of every probe body. */
export const HEALTH_CONTENT_TYPE = 'application/health+json';

/** The health+json status vocabulary. */
export type HealthStatus = 'pass' | 'warn' | 'fail';

/** What a probe returns: an HTTP status and a health+json body. */
export interface ProbeResponse {
  status: number;
  body: Record<string, unknown>;
}

/** The latest outcome of one check, as kept between runs. */
export interface CheckState {
  name: string;
  required: boolean;
  status: HealthStatus;
  ok: boolean;
  latencyMs: number;
  /** ISO time the run finished. */
  time: string;
  message?: string;
  detail?: Record<string, unknown>;
  consecutiveFailures: number;
}

/** Options for {@link createHealth}. */
export interface HealthOptions {
  service: string;
  instanceId: string;
  version?: string;
  /** How often every check runs (ms). */
  intervalMs: number;
  /** Per-check deadline (ms); a check that takes longer counts as failed. */
  timeoutMs: number;
  logger?: Logger;
  /**
   * Source of the event-loop delay p99 shown on /health/deep. By default the health object keeps
   * its own histogram while started, reset after every check round so the figure is recent.
   */
  eventLoopDelayP99Ms?: () => number;
}

/** A running set of health checks and the four probes. */
export interface Health {
  /** Register a check; when already started it runs at once rather than waiting a full interval. */
  add(check: HealthCheck): void;
  /** Start the background loop (first round runs immediately). Idempotent. */
  start(): void;
  /** Stop the background loop. */
  stop(): void;
  /** The service finished starting: `/health/startup` passes and `/health/ready` may pass. */
  markStarted(): void;
  /** Shutdown began: `/health/ready` fails from now on, whatever the checks say. */
  setDraining(): void;
  readonly draining: boolean;
  readonly started: boolean;
  /** Run every check once now and wait for the results (startup code and tests). */
  runOnce(): Promise<void>;
  /** The latest state of every check, by name. */
  results(): ReadonlyMap<string, CheckState>;
  live(): ProbeResponse;
  ready(): ProbeResponse;
  startup(): ProbeResponse;
  deep(): ProbeResponse;
}

const TIMED_OUT = Symbol('timed-out');

/** Settle with the promise, or with TIMED_OUT when the signal fires first (even if the promise ignores it). */
function raceSignal<T>(p: Promise<T>, signal: AbortSignal): Promise<T | typeof TIMED_OUT> {
  if (signal.aborted) return Promise.resolve(TIMED_OUT);
  return new Promise((resolve, reject) => {
    const onAbort = () => resolve(TIMED_OUT);
    signal.addEventListener('abort', onAbort, { once: true });
    p.then(
      (v) => {
        signal.removeEventListener('abort', onAbort);
        resolve(v);
      },
      (e: unknown) => {
        signal.removeEventListener('abort', onAbort);
        reject(e);
      },
    );
  });
}

const round = (n: number, digits = 2) => Math.round(n * 10 ** digits) / 10 ** digits;

/**
 * Create the health probes for one instance.
 *
 * @example
 * const health = createHealth({ service: 'orders', instanceId: 'orders-1', intervalMs: 2000, timeoutMs: 1000 });
 * health.add(redisCheck(redis));
 * health.start();
 * health.markStarted();
 * const { status, body } = health.ready(); // 200 once every required check passes
 */
export function createHealth(options: HealthOptions): Health {
  const log = options.logger ?? silentLogger;
  const checks = new Map<string, HealthCheck>();
  const states = new Map<string, CheckState>();
  const running = new Map<string, Promise<void>>();
  // Runs that outlived their timeout and still have not settled (the check ignored its signal).
  const unsettled = new Map<string, number>();
  const bornAt = Date.now();
  let timer: NodeJS.Timeout | undefined;
  let looping = false;
  let started = false;
  let draining = false;
  let histogram: IntervalHistogram | undefined;
  let lastP99Ms = 0;

  function p99Ms(): number {
    if (options.eventLoopDelayP99Ms) return options.eventLoopDelayP99Ms();
    if (histogram && histogram.count > 0) return round(histogram.percentile(99) / 1e6);
    return lastP99Ms;
  }

  async function runCheck(check: HealthCheck): Promise<void> {
    // A run still pending (another round, or a check that ignored its timeout): share it rather
    // than pile up another one.
    const pending = running.get(check.name);
    if (pending) return pending;
    const job = (async () => {
      // A referenced timer, unlike AbortSignal.timeout: an awaited runOnce() must not let the
      // process exit under a check that never settles.
      const controller = new AbortController();
      const timeout = setTimeout(() => controller.abort(), options.timeoutMs);
      const signal = controller.signal;
      const t0 = performance.now();
      let result: CheckResult;
      try {
        const stuckSince = unsettled.get(check.name);
        if (stuckSince !== undefined) {
          // Calling it again would pile up another stuck run every interval.
          result = {
            ok: false,
            message: `previous run still pending after ${Math.round(performance.now() - stuckSince)} ms`,
          };
        } else {
          const inner = check.run(signal);
          const r = await raceSignal(inner, signal);
          if (r === TIMED_OUT) {
            unsettled.set(check.name, t0);
            const clear = () => unsettled.delete(check.name);
            inner.then(clear, clear);
            result = { ok: false, message: `timed out after ${options.timeoutMs} ms` };
          } else result = r;
        }
      } catch (err) {
        result = { ok: false, message: err instanceof Error ? err.message : String(err) };
      } finally {
        clearTimeout(timeout);
      }
      const latencyMs = round(performance.now() - t0);
      // The check may have been replaced while it ran; only record results for the current one.
      if (checks.get(check.name) !== check) return;
      const prev = states.get(check.name);
      const status: HealthStatus = result.ok ? 'pass' : check.required ? 'fail' : 'warn';
      const state: CheckState = {
        name: check.name,
        required: check.required,
        status,
        ok: result.ok,
        latencyMs,
        time: new Date().toISOString(),
        message: result.message,
        detail: result.detail,
        consecutiveFailures: result.ok ? 0 : (prev?.consecutiveFailures ?? 0) + 1,
      };
      states.set(check.name, state);
      // Log transitions only: a dependency that stays down must not flood the log every interval.
      if (prev === undefined ? !result.ok : prev.ok !== result.ok) {
        const fields = {
          check: check.name,
          required: check.required,
          status,
          latency_ms: latencyMs,
          reason: result.message,
        };
        if (result.ok) log.info(fields, `health check ${check.name} passes again`);
        else log.warn(fields, `health check ${check.name} failing`);
      }
    })().finally(() => running.delete(check.name));
    running.set(check.name, job);
    await job;
  }

  async function runAll(): Promise<void> {
    await Promise.all([...checks.values()].map((c) => runCheck(c)));
  }

  function schedule(): void {
    if (!looping) return;
    timer = setTimeout(async () => {
      await runAll();
      if (histogram) {
        if (histogram.count > 0) lastP99Ms = round(histogram.percentile(99) / 1e6);
        histogram.reset();
      }
      schedule();
    }, options.intervalMs);
    // Probes must not keep a process alive on their own.
    timer.unref();
  }

  function checksBody(includeDetail: boolean): Record<string, unknown[]> {
    const out: Record<string, unknown[]> = {};
    for (const check of checks.values()) {
      const s = states.get(check.name);
      const entry: Record<string, unknown> = s
        ? {
            componentId: check.name,
            status: s.status,
            required: s.required,
            observedValue: s.latencyMs,
            observedUnit: 'ms',
            latency_ms: s.latencyMs,
            time: s.time,
          }
        : {
            componentId: check.name,
            status: check.required ? 'fail' : 'warn',
            required: check.required,
            output: 'not checked yet',
          };
      if (s?.message !== undefined) entry.output = s.message;
      if (includeDetail && s?.detail !== undefined) entry.detail = s.detail;
      if (includeDetail && s && s.consecutiveFailures > 0) entry.consecutive_failures = s.consecutiveFailures;
      out[`${check.name}:responseTime`] = [entry];
    }
    return out;
  }

  /** Overall status from the latest results: fail if a required check failed or has not run yet. */
  function checkStatus(): { status: HealthStatus; failing: string[] } {
    const failing: string[] = [];
    let warn = false;
    for (const check of checks.values()) {
      const s = states.get(check.name);
      if (s === undefined || !s.ok) {
        if (check.required) failing.push(check.name);
        else warn = true;
      }
    }
    return { status: failing.length > 0 ? 'fail' : warn ? 'warn' : 'pass', failing };
  }

  function base(status: HealthStatus): Record<string, unknown> {
    const body: Record<string, unknown> = {
      status,
      serviceId: options.service,
      instanceId: options.instanceId,
    };
    if (options.version !== undefined) body.version = options.version;
    return body;
  }

  const health: Health = {
    add(check) {
      checks.set(check.name, check);
      states.delete(check.name);
      if (looping) void runCheck(check);
    },
    start() {
      if (looping) return;
      looping = true;
      if (!options.eventLoopDelayP99Ms) {
        histogram = monitorEventLoopDelay({ resolution: 10 });
        histogram.enable();
      }
      void runAll();
      schedule();
    },
    stop() {
      looping = false;
      if (timer !== undefined) clearTimeout(timer);
      timer = undefined;
      histogram?.disable();
      histogram = undefined;
    },
    markStarted() {
      if (!started) log.info({}, 'startup complete');
      started = true;
    },
    setDraining() {
      draining = true;
    },
    get draining() {
      return draining;
    },
    get started() {
      return started;
    },
    runOnce: runAll,
    results: () => states,
    live() {
      // Liveness stays up while draining: restarting a draining process would drop its requests.
      return { status: 200, body: { ...base('pass'), uptime_s: round((Date.now() - bornAt) / 1000, 1) } };
    },
    ready() {
      const { status, failing } = checkStatus();
      let output: string | undefined;
      if (draining) output = 'draining: shutting down';
      else if (!started) output = 'starting';
      else if (failing.length > 0) output = `required check failing: ${failing.join(', ')}`;
      const overall: HealthStatus = output !== undefined ? 'fail' : status;
      const body = { ...base(overall), checks: checksBody(false) };
      if (output !== undefined) Object.assign(body, { output });
      return { status: overall === 'fail' ? 503 : 200, body };
    },
    startup() {
      const overall: HealthStatus = started ? 'pass' : 'fail';
      const body = base(overall);
      if (!started) body.output = 'starting';
      return { status: started ? 200 : 503, body };
    },
    deep() {
      const r = health.ready();
      const mem = process.memoryUsage();
      const now = new Date().toISOString();
      const uptimeS = round((Date.now() - bornAt) / 1000, 1);
      const p99 = p99Ms();
      const checksOut: Record<string, unknown[]> = {
        ...checksBody(true),
        'eventLoop:delayP99': [{ status: 'pass', observedValue: p99, observedUnit: 'ms', time: now }],
        'memory:heapUsed': [
          { status: 'pass', observedValue: mem.heapUsed, observedUnit: 'bytes', time: now },
        ],
        'memory:rss': [{ status: 'pass', observedValue: mem.rss, observedUnit: 'bytes', time: now }],
        'uptime:uptime': [{ status: 'pass', observedValue: uptimeS, observedUnit: 's', time: now }],
      };
      const body: Record<string, unknown> = {
        ...r.body,
        uptime_s: uptimeS,
        started,
        draining,
        process: {
          pid: process.pid,
          event_loop_delay_p99_ms: p99,
          heap_used_bytes: mem.heapUsed,
          heap_total_bytes: mem.heapTotal,
          rss_bytes: mem.rss,
        },
        checks: checksOut,
      };
      return { status: r.status, body };
    },
  };
  return health;
}
