/**
 * Prometheus metrics of one limiter, registered on the user's Registry (never the global one).
 * Two limiters may share a registry: existing metrics are reused, not registered twice.
 */
import { Counter, Gauge, Histogram, type Registry } from 'prom-client';

type Labels = Record<string, string>;

function reuse<T>(registry: Registry | undefined, name: string, make: (registers: Registry[]) => T): T {
  const existing = registry?.getSingleMetric(name);
  if (existing) return existing as unknown as T;
  return make(registry ? [registry] : []);
}

/** The limiter's instruments; every method is a no-op cost when no registry was given. */
export class RateLimitMetrics {
  readonly decisions: Counter<'limit' | 'outcome' | 'source'>;
  readonly nearLimit: Counter<'limit'>;
  readonly shadowRejections: Counter<'limit'>;
  readonly redisSeconds: Histogram<'result'>;
  readonly fallback: Counter<'limit' | 'policy' | 'reason'>;
  readonly breakerTransitions: Counter<'to'>;
  readonly breakerOpen: Gauge;
  readonly configVersion: Gauge;
  readonly #children = new Map<string, { inc(n?: number): void }>();

  constructor(registry: Registry | undefined) {
    this.decisions = reuse(
      registry,
      'shoal_ratelimit_decisions_total',
      (registers) =>
        new Counter({
          name: 'shoal_ratelimit_decisions_total',
          help: 'Rate-limit verdicts per limit; outcome allowed|rejected|shadow_rejected, source redis|cache|fallback',
          labelNames: ['limit', 'outcome', 'source'],
          registers,
        }),
    );
    this.nearLimit = reuse(
      registry,
      'shoal_ratelimit_near_limit_total',
      (registers) =>
        new Counter({
          name: 'shoal_ratelimit_near_limit_total',
          help: 'Allowed requests that left at most 10% (nearLimitRatio) of the limit',
          labelNames: ['limit'],
          registers,
        }),
    );
    this.shadowRejections = reuse(
      registry,
      'shoal_ratelimit_shadow_rejections_total',
      (registers) =>
        new Counter({
          name: 'shoal_ratelimit_shadow_rejections_total',
          help: 'Requests a shadow-mode limit would have rejected (they were admitted)',
          labelNames: ['limit'],
          registers,
        }),
    );
    this.redisSeconds = reuse(
      registry,
      'shoal_ratelimit_redis_duration_seconds',
      (registers) =>
        new Histogram({
          name: 'shoal_ratelimit_redis_duration_seconds',
          help: 'Latency of the rate-limit decision round trip to Redis',
          labelNames: ['result'],
          buckets: [0.0002, 0.0005, 0.001, 0.002, 0.005, 0.01, 0.025, 0.05, 0.1],
          registers,
        }),
    );
    this.fallback = reuse(
      registry,
      'shoal_ratelimit_fallback_total',
      (registers) =>
        new Counter({
          name: 'shoal_ratelimit_fallback_total',
          help: 'Limit verdicts made by the failure policy because Redis was slow, down or the breaker open',
          labelNames: ['limit', 'policy', 'reason'],
          registers,
        }),
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
    if (result === 'ok') {
      this.#redisOkChild ??= this.redisSeconds.labels({ result: 'ok' });
      this.#redisOkChild.observe(seconds);
    } else this.redisSeconds.observe({ result }, seconds);
  }

  #redisOkChild: { observe(v: number): void } | undefined;

  /** Cached label children keep the hot path free of label-hashing work. */
  inc(counter: Counter<string>, labels: Labels, id: string): void {
    let child = this.#children.get(id);
    if (!child) {
      child = counter.labels(labels);
      this.#children.set(id, child);
    }
    child.inc();
  }
}
