/**
 * Every error Shoal raises on purpose is a {@link ShoalError} with a stable `code`.
 * Codes are part of the public API: they may be added to, never renamed.
 * HTTP-facing errors render as RFC 9457 `application/problem+json` via {@link toProblem}.
 */

/** Stable error codes. Grouped by area; each area appends its own. */
export type ShoalErrorCode =
  // configuration and startup
  | 'config.invalid'
  // stores
  | 'store.unavailable'
  | 'store.timeout'
  | 'store.script_failed'
  | 'store.migration_failed'
  | 'resolve.redis_unavailable'
  | 'resolve.postgres_unavailable'
  // lifecycle
  | 'shutdown.deadline_exceeded'
  // http
  | 'http.bad_request'
  | 'http.payload_too_large'
  | 'http.unavailable'
  | 'http.unauthorized'
  | 'http.forbidden'
  | 'http.not_found'
  // rate limiting
  | 'ratelimit.invalid_limit'
  | 'ratelimit.rejected'
  | 'ratelimit.store_unavailable'
  // idempotency
  | 'idempotency.key_missing'
  | 'idempotency.key_malformed'
  | 'idempotency.in_flight'
  | 'idempotency.payload_mismatch'
  | 'idempotency.store_unavailable'
  | 'idempotency.lease_lost'
  | 'idempotency.result_unavailable'
  // fleet
  | 'fleet.config_invalid'
  | 'fleet.not_running'
  | 'fleet.no_ready_replica'
  | 'fleet.crash_looping'
  | 'fleet.restart_in_progress'
  | 'fleet.restart_failed'
  | 'fleet.unknown_service'
  | 'fleet.start_failed'
  | 'cli.usage';

/**
 * An error with a stable machine-readable code and optional structured detail.
 *
 * @example
 * throw new ShoalError('config.invalid', 'REDIS_URL: expected redis:// URL, got "localhost"');
 */
export class ShoalError extends Error {
  readonly code: ShoalErrorCode;
  readonly detail: Record<string, unknown> | undefined;

  constructor(
    code: ShoalErrorCode,
    message: string,
    options?: { cause?: unknown; detail?: Record<string, unknown> },
  ) {
    super(message, options?.cause === undefined ? undefined : { cause: options.cause });
    this.name = 'ShoalError';
    this.code = code;
    this.detail = options?.detail;
  }
}

/**
 * Narrow an unknown error to a ShoalError, optionally with a given code.
 *
 * @example
 * if (isShoalError(err, 'store.timeout')) retryLater();
 */
export function isShoalError(err: unknown, code?: ShoalErrorCode): err is ShoalError {
  return err instanceof ShoalError && (code === undefined || err.code === code);
}

/** Base of every problem `type` URI Shoal emits; the suffix is stable. */
export const PROBLEM_TYPE_BASE = 'urn:shoal:problem:';

/** An RFC 9457 problem details object. */
export interface Problem {
  type: string;
  title: string;
  status: number;
  detail?: string;
  instance?: string;
  [extension: string]: unknown;
}

/**
 * Build an RFC 9457 problem object. `slug` becomes the stable `type` URI.
 *
 * @example
 * const body = problem(429, 'rate-limited', 'Too Many Requests', { detail: 'limit "ip" exceeded' });
 */
export function problem(
  status: number,
  slug: string,
  title: string,
  extra: { detail?: string; instance?: string; [k: string]: unknown } = {},
): Problem {
  return { type: PROBLEM_TYPE_BASE + slug, title, status, ...extra };
}

/** Media type for RFC 9457 bodies. */
export const PROBLEM_CONTENT_TYPE = 'application/problem+json';

/**
 * Render a problem as a web `Response` (works in Hono and any fetch-style handler).
 *
 * @example
 * return problemResponse(problem(400, 'bad-request', 'Bad Request', { detail: 'quantity must be > 0' }));
 */
export function problemResponse(p: Problem, headers?: Record<string, string>): Response {
  return new Response(JSON.stringify(p), {
    status: p.status,
    headers: { 'content-type': PROBLEM_CONTENT_TYPE, ...headers },
  });
}
