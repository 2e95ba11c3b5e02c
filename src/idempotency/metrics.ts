/**
 * Prometheus metrics of one idempotency engine, registered on a Registry the user passes in.
 */
import { Counter, Histogram, type Registry } from 'prom-client';
import { registeredMetric } from '../util/metrics.js';

/** The engine's instruments. */
export interface IdempotencyMetrics {
  claims: Counter<'store'>;
  replays: Counter<'store'>;
  conflicts: Counter<'store'>;
  mismatches: Counter<'store'>;
  takeovers: Counter<'store'>;
  leaseLost: Counter<'store'>;
  rejected: Counter<'reason'>;
  notStored: Counter<'reason'>;
  storeErrors: Counter<'store' | 'op' | 'policy'>;
  storeLatency: Histogram<'store' | 'op'>;
}

// Two engines on one registry (e.g. one per route group) share instruments instead of throwing.
function counter<L extends string>(
  registry: Registry,
  name: string,
  help: string,
  labelNames: L[],
): Counter<L> {
  return registeredMetric(registry, name, (registers) => new Counter({ name, help, labelNames, registers }));
}

/**
 * Create (or reuse) the instruments on `registry`.
 *
 * @example
 * const m = idempotencyMetrics(new Registry());
 */
export function idempotencyMetrics(registry: Registry): IdempotencyMetrics {
  return {
    claims: counter(registry, 'shoal_idempotency_claims_total', 'Keys claimed to run the handler', ['store']),
    replays: counter(registry, 'shoal_idempotency_replays_total', 'Stored responses replayed', ['store']),
    conflicts: counter(
      registry,
      'shoal_idempotency_conflicts_total',
      'Requests answered 409 because the key was in flight',
      ['store'],
    ),
    mismatches: counter(
      registry,
      'shoal_idempotency_mismatches_total',
      'Requests answered 422 because the key was used with another payload',
      ['store'],
    ),
    takeovers: counter(
      registry,
      'shoal_idempotency_lease_takeovers_total',
      'Claims that took over a key whose owner let its lease expire',
      ['store'],
    ),
    leaseLost: counter(
      registry,
      'shoal_idempotency_lease_lost_total',
      'Completions refused because another owner had taken the key over',
      ['store'],
    ),
    rejected: counter(
      registry,
      'shoal_idempotency_rejected_total',
      'Requests answered 400 for a missing or malformed key',
      ['reason'],
    ),
    notStored: counter(
      registry,
      'shoal_idempotency_not_stored_total',
      'Responses not kept for replay, by reason',
      ['reason'],
    ),
    storeErrors: counter(
      registry,
      'shoal_idempotency_store_errors_total',
      'Store operations that failed or missed their deadline',
      ['store', 'op', 'policy'],
    ),
    storeLatency: registeredMetric(
      registry,
      'shoal_idempotency_store_duration_seconds',
      (registers) =>
        new Histogram<'store' | 'op'>({
          name: 'shoal_idempotency_store_duration_seconds',
          help: 'Latency of idempotency store operations',
          labelNames: ['store', 'op'],
          buckets: [0.0002, 0.0005, 0.001, 0.002, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1],
          registers,
        }),
    ),
  };
}
