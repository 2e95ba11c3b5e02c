/**
 * Prometheus metrics of one limiter, registered on the user's Registry (never the global one).
 * Two limiters may share a registry: existing metrics are reused, not registered twice.
 *
 * The per-decision counters are plain numbers on the hot path and reach prom-client when the
 * registry is read (its `collect` hook): a prom-client `inc()` hashes the label set on every
 * call, which cost about 40 % of a decision's JavaScript time.
 */
import { Counter, Gauge, type Registry } from 'prom-client';
import { registeredMetric as reuse, SeriesHistogram } from '../util/metrics.js';

type Labels = Record<string, string>;

/** Where a counter created here keeps the flush hooks of every limiter that counts into it. */
const FLUSHERS = Symbol('shoal.ratelimit.flushers');
type Flushable = { [FLUSHERS]?: Set<() => void> };

/** A counter whose pending local counts are pushed by its `collect` hook before every read. */
function flushedCounter<L extends string>(
  registry: Registry | undefined,
  name: string,
  help: string,
  labelNames: L[],
): Counter<L> {
  return reuse(registry, name, (registers) => {
    const flushers = new Set<() => void>();
    const counter = new Counter<L>({
      name,
      help,
      labelNames,
      registers,
      collect() {
        for (const flush of flushers) flush();
      },
    });
    (counter as Flushable)[FLUSHERS] = flushers;
    return counter;
  });
}

/** Local count of one label set, pushed to its prom-client counter on collect. */
interface Cell {
  counter: Counter<string>;
  labels: Labels;
  n: number;
  sent: number;
}

/** Label values of `shoal_ratelimit_decisions_total`. */
export type DecisionOutcome = 'allowed' | 'rejected' | 'shadow_rejected';
/** Where a verdict came from. */
export type DecisionSourceLabel = 'redis' | 'cache' | 'fallback';
const OUTCOME_SLOT: Record<DecisionOutcome, number> = { allowed: 0, rejected: 3, shadow_rejected: 6 };
const SOURCE_SLOT: Record<DecisionSourceLabel, number> = { redis: 0, cache: 1, fallback: 2 };
const SLOTS = 9;

/** The limiter's instruments; every method is a no-op cost when no registry was given. */
export class RateLimitMetrics {
  readonly decisions: Counter<'limit' | 'outcome' | 'source'>;
  readonly nearLimit: Counter<'limit'>;
  readonly shadowRejections: Counter<'limit'>;
  readonly redisSeconds: SeriesHistogram<'result'>;
  readonly fallback: Counter<'limit' | 'policy' | 'reason'>;
  readonly breakerTransitions: Counter<'to'>;
  readonly breakerOpen: Gauge;
  readonly configVersion: Gauge;
  readonly #cells = new Map<string, Cell>();
  readonly #decisionCells = new Map<string, Array<Cell | undefined>>();
  readonly #all: Cell[] = [];
  readonly #flush = () => {
    for (const c of this.#all) {
      if (c.n === c.sent) continue;
      c.counter.inc(c.labels, c.n - c.sent);
      c.sent = c.n;
    }
  };

  constructor(registry: Registry | undefined) {
    this.decisions = flushedCounter(
      registry,
      'shoal_ratelimit_decisions_total',
      'Rate-limit verdicts per limit; outcome allowed|rejected|shadow_rejected, source redis|cache|fallback',
      ['limit', 'outcome', 'source'],
    );
    this.nearLimit = flushedCounter(
      registry,
      'shoal_ratelimit_near_limit_total',
      'Allowed requests that left at most 10% (nearLimitRatio) of the limit',
      ['limit'],
    );
    this.shadowRejections = flushedCounter(
      registry,
      'shoal_ratelimit_shadow_rejections_total',
      'Requests a shadow-mode limit would have rejected (they were admitted)',
      ['limit'],
    );
    this.redisSeconds = reuse(
      registry,
      'shoal_ratelimit_redis_duration_seconds',
      (registers) =>
        new SeriesHistogram({
          name: 'shoal_ratelimit_redis_duration_seconds',
          help: 'Latency of the rate-limit decision round trip to Redis',
          labelNames: ['result'],
          buckets: [0.0002, 0.0005, 0.001, 0.002, 0.005, 0.01, 0.025, 0.05, 0.1],
          registers,
        }),
    );
    this.fallback = flushedCounter(
      registry,
      'shoal_ratelimit_fallback_total',
      'Limit verdicts made by the failure policy because Redis was slow, down or the breaker open',
      ['limit', 'policy', 'reason'],
    );
    this.breakerTransitions = reuse(
      registry,
      'shoal_ratelimit_breaker_transitions_total',
      (registers) =>
        new Counter({
          name: 'shoal_ratelimit_breaker_transitions_total',
          help: 'Circuit breaker state changes',
          labelNames: ['to'],
          registers,
        }),
    );
    this.breakerOpen = reuse(
      registry,
      'shoal_ratelimit_breaker_open',
      (registers) =>
        new Gauge({
          name: 'shoal_ratelimit_breaker_open',
          help: '1 while the rate limiter bypasses Redis (breaker open or half-open)',
          registers,
        }),
    );
    this.configVersion = reuse(
      registry,
      'shoal_ratelimit_config_version',
      (registers) =>
        new Gauge({
          name: 'shoal_ratelimit_config_version',
          help: 'Version of the fleet-wide rate-limit configuration this instance applies',
          registers,
        }),
    );
  }

  /** Redis latency; the common `ok` child is cached. */
  observeRedis(result: 'ok' | 'timeout' | 'error', seconds: number): void {
    let record = this.#redisSeries.get(result);
    if (record === undefined) {
      record = this.redisSeconds.series({ result });
      this.#redisSeries.set(result, record);
    }
    record(seconds);
  }

  readonly #redisSeries = new Map<string, (seconds: number) => void>();

  decision(limit: string, outcome: DecisionOutcome, source: DecisionSourceLabel): void {
    let slots = this.#decisionCells.get(limit);
    if (!slots) {
      slots = new Array(SLOTS);
      this.#decisionCells.set(limit, slots);
    }
    const k = OUTCOME_SLOT[outcome] + SOURCE_SLOT[source];
    let cell = slots[k];
    if (!cell) {
      const labels = { limit, outcome, source };
      cell = this.#cell(this.decisions, labels);
      if (!cell) {
        this.decisions.inc(labels);
        return;
      }
      slots[k] = cell;
    }
    cell.n++;
  }

  /**
   * Count one event: a plain increment, pushed to prom-client when the registry is read. `id`
   * must identify (counter, labels) uniquely.
   */
  inc(counter: Counter<string>, labels: Labels, id: string): void {
    let cell = this.#cells.get(id);
    if (!cell) {
      cell = this.#cell(counter, labels);
      if (!cell) {
        counter.inc(labels);
        return;
      }
      this.#cells.set(id, cell);
    }
    cell.n++;
  }

  #cell(counter: Counter<string>, labels: Labels): Cell | undefined {
    const flushers = (counter as Flushable)[FLUSHERS];
    // a counter of that name registered by someone else has no collect hook: count directly
    if (!flushers) return undefined;
    flushers.add(this.#flush);
    const cell = { counter, labels, n: 0, sent: 0 };
    this.#all.push(cell);
    return cell;
  }

  /** Push pending counts and stop contributing to shared counters (limiter closed). */
  detach(): void {
    this.#flush();
    for (const c of [this.decisions, this.nearLimit, this.shadowRejections, this.fallback]) {
      (c as Flushable)[FLUSHERS]?.delete(this.#flush);
    }
  }
}
