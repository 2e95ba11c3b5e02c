/**
 * `shoal/ratelimit`: rate limits shared by every instance of a service.
 *
 * K limits per request in one atomic Redis round trip (sliding window, GCRA, fixed window),
 * Redis time only, a local block cache, deadlines with per-limit failure policies behind a
 * circuit breaker, fleet-wide runtime overrides and Prometheus metrics.
 *
 * @example
 * import { createRateLimiter } from 'shoal/ratelimit';
 * const limiter = createRateLimiter({ redis, limits: { ip: '200/min', identity: '100/min' } });
 * await limiter.start();
 * const d = await limiter.check({ ip: '203.0.113.9', identity: 'user-42' });
 */
export { type BreakerState, CircuitBreaker } from './breaker.js';
export { overrideSchema } from './control.js';
export { headersFor, type RateLimitHeaders } from './headers.js';
export { type KeyMode, keySlot, subjectOf } from './keys.js';
export {
  type CheckOptions,
  createRateLimiter,
  type KeyState,
  type LimitDefinition,
  RateLimiter,
} from './limiter.js';
export { formatRate, parseRate, type Rate, toRate } from './parse.js';
export type {
  Algorithm,
  ContextOverride,
  Decision,
  DecisionSource,
  FailurePolicy,
  LimitMode,
  LimitOptions,
  LimitResult,
  RateLimiterOptions,
  RuntimeSnapshot,
} from './types.js';
