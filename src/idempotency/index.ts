/**
 * `shoal/idempotency`: Idempotency-Key handling that holds across instances.
 *
 * @example
 * import { createIdempotency, redisIdempotencyStore } from 'shoal/idempotency';
 * import { idempotency } from 'shoal/hono';
 * const idem = createIdempotency({ store: redisIdempotencyStore({ redis }) });
 * app.post('/api/payments', idempotency(idem), handler);
 */
export {
  createIdempotency,
  DEFAULT_REPLAY_HEADERS,
  defaultStoreStatus,
  type Idempotency,
  type IdempotencyContext,
  type IdempotencyOptions,
  type IdempotentRequest,
} from './engine.js';
export {
  canonicalJson,
  type FingerprintFields,
  type FingerprintInput,
  requestFingerprint,
} from './fingerprint.js';
export { MAX_IDEMPOTENCY_KEY_LENGTH, type ParsedKey, parseIdempotencyKey } from './key.js';
export { type IdempotencyMetrics, idempotencyMetrics } from './metrics.js';
export {
  type PostgresIdempotencyStoreOptions,
  postgresIdempotencyStore,
  purgeIdempotencyRecords,
} from './postgres-store.js';
export { type RedisIdempotencyStoreOptions, redisIdempotencyStore } from './redis-store.js';
export {
  type ClaimOutcome,
  type Completion,
  decodeResponse,
  encodeResponse,
  type IdempotencyStore,
  type StoredResponse,
} from './store.js';
