/**
 * Prometheus metrics with prom-client, on a registry the caller owns (never the global default),
 * so two services or two test apps in one process never see each other's numbers.
 *
 * Values that are cheap to read at scrape time (in-flight requests, open connections, pool sizes,
 * event-loop delay) are read in `collect()` callbacks instead of being updated per event.
 */
import type { Server } from 'node:net';
import { monitorEventLoopDelay } from 'node:perf_hooks';
import type pg from 'pg';
import {
  Counter,
  collectDefaultMetrics,
  Gauge,
  Histogram,
  type MetricObjectWithValues,
  type MetricValue,
  Registry,
} from 'prom-client';
import type { RedisClient } from '../stores/redis/client.js';
import {
  exportedHistogram,
  exportedMetric,
  type HistogramSeries,
  recordObservation,
} from '../util/metrics.js';

export type { Registry } from 'prom-client';

/** Per-service metrics; create one with {@link createMetrics}. */
export interface Metrics {
  /** The registry every metric here lives in; register your own metrics on it too. */
  registry: Registry;
  /** The `Content-Type` of {@link Metrics.render}'s output. */
  contentType: string;
  /** Prometheus text exposition of everything in the registry. */
  render(): Promise<string>;
  /** Count one finished request and record its duration. */
  observeRequest(route: string, method: string, status: number, seconds: number): void;
  /** In-flight gauge: call when a request starts... */
  requestStarted(): void;
  /** ...and when it finishes, whatever the outcome. */
  requestFinished(): void;
  /** Report the server's open connections (read at scrape time). */
  trackServer(server: Server): void;
  /** Report a pg pool's total/idle/waiting counts (read at scrape time). */
  observePgPool(pool: pg.Pool, name?: string): void;
  /** Time every command the client sends. */
  observeRedis(client: RedisClient, name?: string): void;
  /** Start sampling event-loop delay; returns the function that stops it. */
  startEventLoopMonitor(): () => void;
  /** Event-loop delay p99 in ms over the recent window; 0 when the monitor is not running. */
  eventLoopDelayP99Ms(): number;
}

/** Options for {@link createMetrics}. */
export interface MetricsOptions {
  /** Default label `service` on every series. */
  service: string;
  /** Default label `instance` on every series. */
  instanceId: string;
  /** Metric name prefix; default `shoal_`. */
  prefix?: string;
  /** Also collect prom-client's process metrics (CPU, memory, GC, handles); default true. */
  processMetrics?: boolean;
  /** Request duration buckets in seconds. */
  httpBuckets?: number[];
  /** Redis command duration buckets in seconds. */
  redisBuckets?: number[];
  /** Event-loop delay window: percentiles describe roughly the last one to two windows. Default 10 s. */
  eventLoopWindowMs?: number;
}

const HTTP_BUCKETS = [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10];
const REDIS_BUCKETS = [0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1];

type RequestLabel = 'route' | 'method' | 'status';

/** One route/method/status series: plain numbers, updated per request without label hashing. */
interface RequestSeries extends HistogramSeries<RequestLabel> {
  labels: Record<RequestLabel, string>;
}

/**
 * The request counter and duration histogram share one table of series, looked up by route,
 * method and status through nested maps (no label object, hash or sort per request). prom-client
 * still owns naming, default labels and the exposition format: the two metrics below are its
 * Counter and Histogram, whose `get()` reads this table at scrape time.
 */
class RequestSeriesTable {
  private readonly byRoute = new Map<string, Map<string, Map<number, RequestSeries>>>();
  readonly all: RequestSeries[] = [];
  constructor(readonly bounds: readonly number[]) {}

  // Consecutive requests mostly hit the same series (and the same route and method string
  // objects): the last one is checked before the three map lookups.
  private last: RequestSeries | undefined;
  private lastRoute = '';
  private lastMethod = '';
  private lastStatus = 0;

  record(route: string, method: string, status: number, seconds: number): void {
    const last = this.last;
    if (
      last !== undefined &&
      status === this.lastStatus &&
      route === this.lastRoute &&
      method === this.lastMethod
    ) {
      recordObservation(last, this.bounds, seconds);
      return;
    }
    let byMethod = this.byRoute.get(route);
    if (byMethod === undefined) {
      byMethod = new Map();
      this.byRoute.set(route, byMethod);
    }
    let byStatus = byMethod.get(method);
    if (byStatus === undefined) {
      byStatus = new Map();
      byMethod.set(method, byStatus);
    }
    let s = byStatus.get(status);
    if (s === undefined) {
      s = {
        labels: { route, method, status: String(status) },
        count: 0,
        sum: 0,
        buckets: new Float64Array(this.bounds.length),
      };
      byStatus.set(status, s);
      this.all.push(s);
    }
    this.last = s;
    this.lastRoute = route;
    this.lastMethod = method;
    this.lastStatus = status;
    recordObservation(s, this.bounds, seconds);
  }

  clear(): void {
    this.byRoute.clear();
    this.all.length = 0;
    this.last = undefined;
  }
}

type CounterConfig = ConstructorParameters<typeof Counter<RequestLabel>>[0];
type HistogramConfig = ConstructorParameters<typeof Histogram<RequestLabel>>[0];

class RequestCounter extends Counter<RequestLabel> {
  constructor(
    private readonly config: CounterConfig,
    private readonly table: RequestSeriesTable,
  ) {
    super(config);
  }
  override async get() {
    return exportedMetric(
      this.config,
      'counter',
      this.table.all.map((s) => ({ labels: s.labels, value: s.count })),
    ) as unknown as MetricObjectWithValues<MetricValue<RequestLabel>>;
  }
  override reset(): void {
    super.reset();
    // Called once by the base constructor, before the table is assigned.
    this.table?.clear();
  }
}

class RequestHistogram extends Histogram<RequestLabel> {
  constructor(
    private readonly config: HistogramConfig,
    private readonly table: RequestSeriesTable,
  ) {
    super(config);
  }
  override async get() {
    return exportedHistogram<RequestLabel>(this.config, this.table.bounds, this.table.all);
  }
  // The registry prefers this for the text format; the table has one shape for both.
  getForPromString() {
    return this.get();
  }
  override reset(): void {
    super.reset();
    this.table?.clear();
  }
}

interface DelaySnapshot {
  p50: number;
  p90: number;
  p99: number;
  max: number;
}

/** Percentiles of a delay histogram in ms (the histogram records nanoseconds). */
function delaySnapshot(h: ReturnType<typeof monitorEventLoopDelay>): DelaySnapshot {
  return {
    p50: h.percentile(50) / 1e6,
    p90: h.percentile(90) / 1e6,
    p99: h.percentile(99) / 1e6,
    max: h.max / 1e6,
  };
}

/**
 * Create the metrics of one service instance on a fresh registry with default labels
 * `service` and `instance`.
 *
 * @example
 * const metrics = createMetrics({ service: 'orders', instanceId: 'orders-1' });
 * metrics.observePgPool(pool);
 * metrics.observeRedis(redis);
 * const stop = metrics.startEventLoopMonitor();
 * app.get('/metrics', metricsHandler(metrics));
 */
export function createMetrics(opts: MetricsOptions): Metrics {
  const prefix = opts.prefix ?? 'shoal_';
  const registry = new Registry();
  registry.setDefaultLabels({ service: opts.service, instance: opts.instanceId });
  if (opts.processMetrics ?? true) collectDefaultMetrics({ register: registry, prefix });

  const table = new RequestSeriesTable([...(opts.httpBuckets ?? HTTP_BUCKETS)].sort((a, b) => a - b));
  new RequestCounter(
    {
      name: `${prefix}http_requests_total`,
      help: 'HTTP requests finished, by route pattern, method and status.',
      labelNames: ['route', 'method', 'status'] as const,
      registers: [registry],
    },
    table,
  );
  new RequestHistogram(
    {
      name: `${prefix}http_request_duration_seconds`,
      help: 'Time from request arrival to response headers, by route pattern, method and status.',
      labelNames: ['route', 'method', 'status'] as const,
      buckets: table.bounds as number[],
      registers: [registry],
    },
    table,
  );

  let inFlight = 0;
  new Gauge({
    name: `${prefix}http_requests_in_flight`,
    help: 'HTTP requests currently being handled.',
    registers: [registry],
    collect() {
      this.set(inFlight);
    },
  });

  const servers = new Set<Server>();
  new Gauge({
    name: `${prefix}http_open_connections`,
    help: 'Open client connections on the tracked HTTP servers.',
    registers: [registry],
    async collect() {
      let total = 0;
      for (const server of servers) {
        total += await new Promise<number>((resolve) =>
          server.getConnections((err, n) => resolve(err ? 0 : n)),
        );
      }
      this.set(total);
    },
  });

  const pools = new Map<string, pg.Pool>();
  const poolGauge = (name: string, help: string, read: (p: pg.Pool) => number) =>
    new Gauge({
      name: `${prefix}${name}`,
      help,
      labelNames: ['pool'] as const,
      registers: [registry],
      collect() {
        this.reset();
        for (const [poolName, pool] of pools) {
          if ((pool as pg.Pool & { ended?: boolean }).ended) {
            pools.delete(poolName);
            continue;
          }
          this.set({ pool: poolName }, read(pool));
        }
      },
    });
  poolGauge('pg_pool_total_connections', 'PostgreSQL connections held by the pool.', (p) => p.totalCount);
  poolGauge('pg_pool_idle_connections', 'PostgreSQL connections idle in the pool.', (p) => p.idleCount);
  poolGauge(
    'pg_pool_waiting_clients',
    'Callers waiting for a PostgreSQL connection (pool exhausted).',
    (p) => p.waitingCount,
  );

  const redisLatency = new Histogram({
    name: `${prefix}redis_command_duration_seconds`,
    help: 'Redis command round-trip time, by client name, command and outcome (ok or error).',
    labelNames: ['client', 'command', 'outcome'] as const,
    buckets: opts.redisBuckets ?? REDIS_BUCKETS,
    registers: [registry],
  });
  // Private to this Metrics object, so two objects observing one client each time it once.
  const timed = Symbol('shoal.metrics.redis');

  const windowMs = opts.eventLoopWindowMs ?? 10_000;
  let delay: ReturnType<typeof monitorEventLoopDelay> | undefined;
  let previous: DelaySnapshot | undefined;
  const snapshot = (): DelaySnapshot | undefined => {
    if (!delay) return undefined;
    // A window that just started has too few samples to mean anything; use the last full one.
    if (delay.count < 10 && previous) return previous;
    if (delay.count === 0) return undefined;
    return delaySnapshot(delay);
  };
  new Gauge({
    name: `${prefix}event_loop_delay_seconds`,
    help: 'Event-loop delay percentiles over the recent window (quantile "1" is the maximum).',
    labelNames: ['quantile'] as const,
    registers: [registry],
    collect() {
      this.reset();
      const s = snapshot();
      if (!s) return;
      this.set({ quantile: '0.5' }, s.p50 / 1000);
      this.set({ quantile: '0.9' }, s.p90 / 1000);
      this.set({ quantile: '0.99' }, s.p99 / 1000);
      this.set({ quantile: '1' }, s.max / 1000);
    },
  });

  return {
    registry,
    contentType: registry.contentType,
    render: () => registry.metrics(),

    observeRequest(route, method, status, seconds) {
      table.record(route, method, status, seconds);
    },
    requestStarted() {
      inFlight++;
    },
    requestFinished() {
      inFlight--;
    },

    trackServer(server) {
      servers.add(server);
      server.once('close', () => servers.delete(server));
    },

    observePgPool(pool, name = 'default') {
      pools.set(name, pool);
    },

    observeRedis(client, name = 'default') {
      type Cmd = { name: string; promise: Promise<unknown>; [timed]?: true };
      const target = client as unknown as { sendCommand(cmd: Cmd, ...rest: unknown[]): unknown };
      const original = target.sendCommand;
      target.sendCommand = function (this: unknown, cmd: Cmd, ...rest: unknown[]) {
        // ioredis may pass one command through here more than once (offline queue, resend after
        // reconnect); the first pass is when the caller started waiting.
        if (cmd && !cmd[timed] && cmd.promise) {
          cmd[timed] = true;
          const start = performance.now();
          const command = cmd.name;
          cmd.promise.then(
            () =>
              redisLatency.observe(
                { client: name, command, outcome: 'ok' },
                (performance.now() - start) / 1000,
              ),
            () =>
              redisLatency.observe(
                { client: name, command, outcome: 'error' },
                (performance.now() - start) / 1000,
              ),
          );
        }
        return original.call(this, cmd, ...rest);
      };
    },

    startEventLoopMonitor() {
      if (delay) return () => {};
      const h = monitorEventLoopDelay({ resolution: 10 });
      h.enable();
      delay = h;
      const roll = setInterval(() => {
        if (h.count >= 10) previous = delaySnapshot(h);
        h.reset();
      }, windowMs);
      roll.unref();
      return () => {
        clearInterval(roll);
        h.disable();
        if (delay === h) delay = undefined;
        previous = undefined;
      };
    },

    eventLoopDelayP99Ms() {
      return snapshot()?.p99 ?? 0;
    },
  };
}
