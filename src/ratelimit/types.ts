/** Public types of `shoal/ratelimit`. */
import type { Registry } from 'prom-client';
import type { Logger } from '../contracts/index.js';
import type { RedisClient } from '../stores/redis/client.js';
import type { KeyMode } from './keys.js';
import type { Rate } from './parse.js';

/** Counting algorithm of one limit. */
export type Algorithm = 'sliding-window' | 'gcra' | 'fixed-window';

/**
 * What a limit does when Redis is slow, down or the circuit breaker is open:
 * `open` admits, `closed` rejects (503), `local` counts in memory at `requests / replicas`.
 */
export type FailurePolicy = 'open' | 'closed' | 'local';

/** `shadow` evaluates and counts a limit (metrics, logs, headers) but never rejects on it. */
export type LimitMode = 'enforce' | 'shadow';

/** One named limit. */
export interface LimitOptions {
  /** `"200/min"`, `"10/s"`, `"100/10s"` or `{ requests, windowMs }`. */
  limit: string | Rate;
  /** Default `sliding-window`. */
  algorithm?: Algorithm;
  /** GCRA only: how many requests may arrive at once (default: `requests`). */
  burst?: number;
  /** Overrides the limiter-wide {@link RateLimiterOptions.onStoreFailure}. */
  onStoreFailure?: FailurePolicy;
  /** Default `enforce`. */
  mode?: LimitMode;
  /** Per-identity overrides set through the admin API apply to this limit. */
  identity?: boolean;
}

/** Options of {@link createRateLimiter}. */
export interface RateLimiterOptions {
  redis: RedisClient;
  /** Named limits; a string is shorthand for `{ limit }`. Names: 1-64 of `A-Z a-z 0-9 . _ -`. */
  limits: Record<string, LimitOptions | string>;
  /** Key prefix (default `shoal:rl:`). */
  prefix?: string;
  /** `shared` (default): one hash tag, every decision atomic on one node. `spread`: see docs. */
  keyMode?: KeyMode;
  /** Per-decision Redis deadline in ms (default 50). */
  deadlineMs?: number;
  /** Default failure policy of every limit (default `local`). */
  onStoreFailure?: FailurePolicy;
  /** Replicas sharing the limit, for the `local` policy (default `SHOAL_REPLICAS` or 1). */
  replicas?: number;
  /** Entries of the local block cache (default 10000; 0 disables it). */
  blockCacheSize?: number;
  /** Entries of the in-memory fallback counters (default 10000). */
  fallbackSize?: number;
  /** Subjects longer than this (default 64) are stored as a digest. */
  maxSubjectLength?: number;
  /** Consecutive failures that open the breaker (default 3) and how long it stays open (default 1000 ms). */
  breaker?: { failureThreshold?: number; cooldownMs?: number };
  /** Metrics go here; never the global registry. */
  registry?: Registry;
  logger?: Logger;
  /** Local clock in ms for the block cache, fallback counters and breaker (tests inject skew). */
  clock?: () => number;
  /** How often each instance compares its configuration version with Redis (default 500 ms). */
  configPollMs?: number;
  /** An allowed decision with `remaining <= ratio * requests` counts as near-limit (default 0.1). */
  nearLimitRatio?: number;
}

/** The verdict of one limit within a decision. */
export interface LimitResult {
  name: string;
  /** The subject as stored (a digest when long); safe to log. */
  subject: string;
  algorithm: Algorithm;
  requests: number;
  windowMs: number;
  mode: LimitMode;
  allowed: boolean;
  remaining: number;
  /** Milliseconds until the window ends (sliding/fixed) or the bucket is full again (GCRA). */
  resetMs: number;
  /** Milliseconds until this request's cost would fit (0 when allowed). */
  retryAfterMs: number;
}

/** Where a decision came from. */
export type DecisionSource = 'redis' | 'cache' | 'fallback';

/** The outcome of {@link RateLimiter.check}. */
export interface Decision {
  allowed: boolean;
  /** Name of the enforcing limit that rejected, if any. */
  rejectedBy: string | undefined;
  /** True when the rejection is a fail-closed limit without Redis (answer 503, not 429). */
  storeUnavailable: boolean;
  retryAfterMs: number;
  source: DecisionSource;
  limits: LimitResult[];
  /** Redis time (Unix ms) at which the script decided; undefined when Redis was not asked. */
  at?: number;
}

/** Runtime override of one limit ("context"), stored in Redis and applied fleet-wide. */
export interface ContextOverride {
  requests_per_minute: number;
  burst_size?: number;
  enabled: boolean;
  mode: LimitMode;
}

/** The fleet-wide runtime configuration as one instance currently sees it. */
export interface RuntimeSnapshot {
  version: number;
  contexts: Map<string, ContextOverride>;
  identities: Map<string, ContextOverride>;
}
