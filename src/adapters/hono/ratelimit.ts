/**
 * Hono glue for `shoal/ratelimit`: a middleware that checks the request against the limiter,
 * sets the rate-limit headers and answers 429 (or 503 for a fail-closed limit without Redis) as
 * problem+json; and `httpRateLimits`, the per-IP / per-identity / per-context bundle most
 * services want, with its admin API.
 */
import { createHash } from 'node:crypto';
import type { Context, Hono, MiddlewareHandler } from 'hono';
import type { Registry } from 'prom-client';
import type { Logger } from '../../contracts/index.js';
import { clientIpOf, createClientIp } from '../../enrich/client-ip.js';
import { problem, problemResponse } from '../../errors.js';
import { headersFor } from '../../ratelimit/headers.js';
import { createRateLimiter, type RateLimiter } from '../../ratelimit/limiter.js';
import { formatRate, parseRate } from '../../ratelimit/parse.js';
import type { Decision, LimitOptions, RateLimiterOptions } from '../../ratelimit/types.js';
import type { RedisClient } from '../../stores/redis/client.js';
import { rateLimitAdmin } from './rate-limit-admin.js';

/** Options of {@link rateLimit}. */
export interface RateLimitMiddlewareOptions {
  /** Limit name -> subject for this request; `undefined` skips that limit. */
  subjects: (
    c: Context,
  ) => Record<string, string | undefined | null> | Promise<Record<string, string | undefined | null>>;
  /** Units this request costs (default 1). */
  cost?: (c: Context) => number | Record<string, number>;
  /** Which headers to send (default `both`). */
  headers?: 'both' | 'ietf' | 'legacy' | 'none';
}

/**
 * The 429/503 problem response for a rejected decision. Names the limit and its rate, never a
 * subject, so one client cannot learn another's key.
 *
 * @example
 * if (!decision.allowed) return rejectionResponse(decision);
 */
export function rejectionResponse(decision: Decision, headers: Record<string, string> = {}): Response {
  const limit = decision.limits.find((l) => l.name === decision.rejectedBy);
  const retry = Math.max(1, Math.ceil(decision.retryAfterMs / 1000));
  if (decision.storeUnavailable) {
    return problemResponse(
      problem(503, 'rate-limit-unavailable', 'Service Unavailable', {
        detail: `Rate limit "${decision.rejectedBy}" cannot be checked right now; retry shortly.`,
        limit: decision.rejectedBy,
        retry_after: retry,
      }),
      { ...headers, 'Retry-After': String(retry) },
    );
  }
  const rate = limit ? formatRate({ requests: limit.requests, windowMs: limit.windowMs }) : undefined;
  return problemResponse(
    problem(429, 'rate-limited', 'Too Many Requests', {
      detail: `Rate limit "${decision.rejectedBy}"${rate ? ` (${rate})` : ''} exceeded; retry after ${retry} s.`,
      limit: decision.rejectedBy,
      ...(rate ? { rate } : {}),
      retry_after: retry,
    }),
    headers,
  );
}

/**
 * Check every request against `limiter`.
 *
 * @example
 * const ip = createClientIp({ trustedProxies: 'loopback' });
 * app.use('/api/*', rateLimit(limiter, { subjects: (c) => ({ ip: clientIpOf(c, ip) }) }));
 */
export function rateLimit(limiter: RateLimiter, options: RateLimitMiddlewareOptions): MiddlewareHandler {
  const which = options.headers ?? 'both';
  return async (c, next) => {
    const subjects = await options.subjects(c);
    const decision = await limiter.check(subjects, { cost: options.cost?.(c) });
    c.set('rateLimit' as never, decision as never);
    const headers = which === 'none' ? {} : headersFor(decision, which);
    if (!decision.allowed) {
      if (which === 'none')
        headers['Retry-After'] = String(Math.max(1, Math.ceil(decision.retryAfterMs / 1000)));
      return rejectionResponse(decision, headers);
    }
    await next();
    for (const [k, v] of Object.entries(headers)) {
      try {
        c.res.headers.set(k, v);
      } catch {
        // Immutable headers (a proxied fetch Response): copy once, then set.
        c.res = new Response(c.res.body, c.res);
        c.res.headers.set(k, v);
      }
    }
  };
}

/**
 * The identity of a bearer token as the limiter sees it: a digest, so tokens never reach Redis
 * or logs. Use the same function to address an identity in the admin API.
 *
 * @example
 * identityFromBearer('Bearer abc.def.ghi'); // 'tok:Jm3...'
 */
export function identityFromBearer(authorization: string | undefined | null): string | undefined {
  const m = authorization ? /^Bearer\s+(\S+)\s*$/i.exec(authorization) : null;
  if (!m) return undefined;
  return 'tok:' + createHash('sha256').update(m[1]!).digest('base64url').slice(0, 22);
}

/**
 * Read a rate from the environment, falling back to a default; a malformed value throws at startup
 * naming the variable and the value.
 *
 * @example
 * const ip = envRate(process.env, 'ORDERS_LIMIT_IP', '200/min');
 */
export function envRate(env: Record<string, string | undefined>, name: string, fallback: string): string {
  const v = env[name];
  const value = v === undefined || v.trim() === '' ? fallback : v.trim();
  parseRate(value, name);
  return value;
}

/** Options of {@link httpRateLimits}. */
export interface HttpRateLimitsOptions
  extends Omit<RateLimiterOptions, 'limits' | 'redis' | 'registry' | 'logger'> {
  redis: RedisClient;
  registry?: Registry;
  logger?: Logger;
  /** Per client IP (default `200/min`); `false` disables. */
  ip?: string | LimitOptions | false;
  /** Per bearer-token identity (default `100/min`); `false` disables. */
  identity?: string | LimitOptions | false;
  /**
   * One shared limit on writes, named by its context (default `{ context: 'writes', limit: '500/min' }`).
   * An admin override of that context takes precedence over `limit`.
   */
  writes?: { context: string; limit: string | LimitOptions } | false;
  /** Methods that count as writes (default POST, PUT, PATCH, DELETE). */
  writeMethods?: string[];
  /** Proxies whose X-Forwarded-For is believed (default `loopback`). */
  trustedProxies?: string | string[];
  /** Identity of a request (default: digest of its bearer token). */
  identityOf?: (c: Context) => string | undefined;
  /** Admin bearer token (e.g. SHOAL_ADMIN_TOKEN); without one the admin routes answer 403. */
  adminToken?: string;
}

/** What {@link httpRateLimits} returns. */
export interface HttpRateLimits {
  limiter: RateLimiter;
  middleware: MiddlewareHandler;
  /** Admin routes (`/rate-limits/...`); mount with `app.route('/api/admin', admin)`. */
  admin: Hono;
  start(): Promise<void>;
  close(): Promise<void>;
}

/**
 * Per-IP, per-identity and per-context write limits with one call, plus the admin API.
 *
 * @example
 * const rl = httpRateLimits({
 *   redis, registry, logger,
 *   ip: envRate(process.env, 'ORDERS_LIMIT_IP', '200/min'),
 *   identity: envRate(process.env, 'ORDERS_LIMIT_IDENTITY', '100/min'),
 *   writes: { context: 'orders-write', limit: envRate(process.env, 'ORDERS_LIMIT_WRITES', '500/min') },
 *   trustedProxies: config.trustedProxies,
 *   adminToken: config.adminToken,
 * });
 * await rl.start();
 * app.use('/api/*', rl.middleware);
 * app.route('/api/admin', rl.admin);
 */
export function httpRateLimits(options: HttpRateLimitsOptions): HttpRateLimits {
  const {
    ip = '200/min',
    identity = '100/min',
    writes = { context: 'writes', limit: '500/min' },
    writeMethods = ['POST', 'PUT', 'PATCH', 'DELETE'],
    trustedProxies,
    identityOf,
    adminToken,
    ...limiterOptions
  } = options;
  const limits: Record<string, LimitOptions | string> = {};
  if (ip !== false) limits.ip = ip;
  if (identity !== false) {
    limits.identity =
      typeof identity === 'string' ? { limit: identity, identity: true } : { identity: true, ...identity };
  }
  if (writes !== false) limits[writes.context] = writes.limit;
  const limiter = createRateLimiter({ ...limiterOptions, limits });
  const resolveIp = createClientIp({ trustedProxies: trustedProxies ?? 'loopback' });
  const idOf = identityOf ?? ((c: Context) => identityFromBearer(c.req.header('authorization')));
  const writeSet = new Set(writeMethods.map((m) => m.toUpperCase()));
  const middleware = rateLimit(limiter, {
    subjects: (c) => ({
      ip: ip === false ? undefined : clientIpOf(c, resolveIp),
      identity: identity === false ? undefined : idOf(c),
      ...(writes === false ? {} : { [writes.context]: writeSet.has(c.req.method) ? 'all' : undefined }),
    }),
  });
  return {
    limiter,
    middleware,
    admin: rateLimitAdmin(limiter, { token: adminToken }),
    start: () => limiter.start(),
    close: () => limiter.close(),
  };
}
