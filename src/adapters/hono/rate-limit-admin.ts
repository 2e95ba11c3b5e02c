/**
 * Admin routes for fleet-wide rate-limit control. Every change is written to Redis with a new
 * version and announced, so every instance applies it within about a second.
 *
 *   GET    /rate-limits                              all limits, overrides and the version
 *   GET    /rate-limits/context/:ctx                 one limit's default and override
 *   PUT    /rate-limits/context/:ctx                 {requests_per_minute, burst_size?, enabled?, mode?}
 *   DELETE /rate-limits/context/:ctx                 back to the configured default
 *   GET|PUT|DELETE /rate-limits/identity/:id         per-identity override (limits with identity: true)
 *   GET    /rate-limits/keys/:limit/:subject         inspect one subject's state
 *   DELETE /rate-limits/keys/:limit/:subject         reset it (fleet-wide, block cache included)
 *   POST   /rate-limits/keys/:limit/:subject/block   {duration_seconds}
 *
 * Bearer token required: 401 without one, 403 with a wrong one.
 */
import { createHash, timingSafeEqual } from 'node:crypto';
import { type Context, Hono, type MiddlewareHandler } from 'hono';
import { z } from 'zod';
import { isShoalError, problem, problemResponse } from '../../errors.js';
import { overrideSchema } from '../../ratelimit/control.js';
import type { RateLimiter } from '../../ratelimit/limiter.js';
import { formatRate } from '../../ratelimit/parse.js';

/** Options of {@link rateLimitAdmin}. */
export interface RateLimitAdminOptions {
  /** The admin bearer token (e.g. SHOAL_ADMIN_TOKEN). Without one every request gets 403. */
  token: string | undefined;
}

const blockSchema = z.strictObject({
  duration_seconds: z
    .number()
    .positive()
    .max(31 * 86_400),
});

const digest = (s: string) => createHash('sha256').update(s).digest();

function bad(detail: string, errors?: unknown): Response {
  return problemResponse(
    problem(400, 'bad-request', 'Bad Request', { detail, ...(errors ? { errors } : {}) }),
  );
}

async function jsonBody(c: Context): Promise<unknown> {
  try {
    return await c.req.json();
  } catch {
    return Symbol.for('invalid-json');
  }
}

function validation<T>(
  schema: z.ZodType<T>,
  body: unknown,
): { ok: true; value: T } | { ok: false; res: Response } {
  if (body === Symbol.for('invalid-json')) return { ok: false, res: bad('request body is not valid JSON') };
  const r = schema.safeParse(body);
  if (r.success) return { ok: true, value: r.data };
  const errors = r.error.issues.map((i) => ({ field: i.path.join('.') || '(body)', message: i.message }));
  return {
    ok: false,
    res: bad(errors.map((e) => `${e.field}: ${e.message}`).join('; '), errors),
  };
}

/**
 * Build the admin sub-app; mount it where you like.
 *
 * @example
 * app.route('/api/admin', rateLimitAdmin(limiter, { token: config.adminToken }));
 * // PUT /api/admin/rate-limits/context/orders-write  {"requests_per_minute":50,"burst_size":10,"enabled":true}
 */
export function rateLimitAdmin(limiter: RateLimiter, options: RateLimitAdminOptions): Hono {
  const app = new Hono();
  const expected = options.token ? digest(options.token) : undefined;

  const auth: MiddlewareHandler = async (c, next) => {
    const header = c.req.header('authorization');
    const m = header ? /^Bearer\s+(\S+)\s*$/i.exec(header) : null;
    if (!m) {
      return problemResponse(
        problem(401, 'unauthorized', 'Unauthorized', { detail: 'Bearer token required' }),
        {
          'WWW-Authenticate': 'Bearer realm="shoal-admin"',
        },
      );
    }
    if (!expected || !timingSafeEqual(digest(m[1]!), expected)) {
      return problemResponse(problem(403, 'forbidden', 'Forbidden', { detail: 'Token not accepted' }));
    }
    await next();
  };
  app.use('/rate-limits', auth);
  app.use('/rate-limits/*', auth);

  app.onError((err) => {
    if (isShoalError(err, 'http.not_found')) {
      return problemResponse(problem(404, 'not-found', 'Not Found', { detail: err.message }));
    }
    if (isShoalError(err, 'http.bad_request') || isShoalError(err, 'ratelimit.invalid_limit')) {
      return bad(err.message);
    }
    return problemResponse(
      problem(503, 'rate-limit-store-unavailable', 'Service Unavailable', {
        detail: 'The rate-limit store did not answer; the change was not applied.',
      }),
    );
  });

  const describe = (name: string) => {
    const def = limiter.definitions.get(name);
    return {
      context: name,
      version: limiter.runtime.version,
      default: def
        ? {
            rate: formatRate(def.rate),
            algorithm: def.algorithm,
            burst_size: def.burst,
            mode: def.mode,
            on_store_failure: def.onStoreFailure,
          }
        : null,
      override: limiter.runtime.contexts.get(name) ?? null,
    };
  };

  app.get('/rate-limits', async (c) => {
    await limiter.refresh();
    return c.json({
      version: limiter.runtime.version,
      limits: [...limiter.definitions.keys()].map(describe),
      contexts: Object.fromEntries(limiter.runtime.contexts),
      identities: Object.fromEntries(limiter.runtime.identities),
    });
  });

  const NAME = /^[A-Za-z0-9._-]{1,64}$/;
  app.get('/rate-limits/context/:ctx', async (c) => {
    const ctx = c.req.param('ctx');
    await limiter.refresh();
    const d = describe(ctx);
    if (!d.default && !d.override) {
      return problemResponse(
        problem(404, 'not-found', 'Not Found', { detail: `no limit or override named "${ctx}"` }),
      );
    }
    return c.json(d);
  });
  app.put('/rate-limits/context/:ctx', async (c) => {
    const ctx = c.req.param('ctx');
    if (!NAME.test(ctx)) return bad('context name: 1-64 characters from A-Z a-z 0-9 . _ -');
    const v = validation(overrideSchema, await jsonBody(c));
    if (!v.ok) return v.res;
    await limiter.setContext(ctx, v.value);
    return c.json(describe(ctx));
  });
  app.delete('/rate-limits/context/:ctx', async (c) => {
    const ctx = c.req.param('ctx');
    if (!NAME.test(ctx)) return bad('context name: 1-64 characters from A-Z a-z 0-9 . _ -');
    await limiter.setContext(ctx, undefined);
    return c.json(describe(ctx));
  });

  app.get('/rate-limits/identity/:id', async (c) => {
    const id = c.req.param('id');
    await limiter.refresh();
    const o = limiter.runtime.identities.get(id);
    if (!o)
      return problemResponse(
        problem(404, 'not-found', 'Not Found', { detail: 'no override for this identity' }),
      );
    return c.json({ identity: id, version: limiter.runtime.version, override: o });
  });
  app.put('/rate-limits/identity/:id', async (c) => {
    const id = c.req.param('id');
    const v = validation(overrideSchema, await jsonBody(c));
    if (!v.ok) return v.res;
    const version = await limiter.setIdentity(id, v.value);
    return c.json({ identity: id, version, override: v.value });
  });
  app.delete('/rate-limits/identity/:id', async (c) => {
    const id = c.req.param('id');
    const version = await limiter.setIdentity(id, undefined);
    return c.json({ identity: id, version, override: null });
  });

  app.get('/rate-limits/keys/:limit/:subject', async (c) => {
    const s = await limiter.inspect(c.req.param('limit'), c.req.param('subject'));
    return c.json({
      limit: s.limit,
      subject: s.subject,
      rate: formatRate({ requests: s.requests, windowMs: s.windowMs }),
      algorithm: s.algorithm,
      remaining: s.remaining,
      reset_ms: s.resetMs,
      retry_after_ms: s.retryAfterMs,
      blocked: s.blocked,
    });
  });
  app.delete('/rate-limits/keys/:limit/:subject', async (c) => {
    await limiter.reset(c.req.param('limit'), c.req.param('subject'));
    return c.json({ limit: c.req.param('limit'), reset: true });
  });
  app.post('/rate-limits/keys/:limit/:subject/block', async (c) => {
    const v = validation(blockSchema, await jsonBody(c));
    if (!v.ok) return v.res;
    const until = await limiter.block(
      c.req.param('limit'),
      c.req.param('subject'),
      Math.ceil(v.value.duration_seconds * 1000),
    );
    return c.json({ limit: c.req.param('limit'), blocked_until: new Date(until).toISOString() });
  });

  return app;
}
