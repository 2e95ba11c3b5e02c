// The orders API: every building block of the toolkit in one small service.
import { Hono } from 'hono';
import type { ShoalRuntime } from 'shoal';
import { problem, problemResponse } from 'shoal';
import { createClientIp } from 'shoal/enrich';
import {
  clientIpOf,
  type HttpRateLimits,
  type IdempotencyVariables,
  idempotency,
  identityFromBearer,
  instrument,
  requestIdOf,
} from 'shoal/hono';
import type { Idempotency } from 'shoal/idempotency';
import type { PgClient } from 'shoal/postgres';
import type { z } from 'zod';
import {
  createOrderSchema,
  getOrder,
  insertOrder,
  listOrders,
  patchOrder,
  patchOrderSchema,
} from './orders.js';

export interface AppDeps {
  runtime: ShoalRuntime;
  rateLimits: HttpRateLimits;
  idempotency: Idempotency<PgClient>;
}

type Env = { Variables: IdempotencyVariables<PgClient> };

function invalid(detail: string, errors?: unknown): Response {
  return problemResponse(
    problem(400, 'validation-failed', 'Invalid request body', { detail, ...(errors ? { errors } : {}) }),
  );
}

async function parseBody<S extends z.ZodType>(
  req: { json(): Promise<unknown> },
  schema: S,
): Promise<{ ok: true; value: z.infer<S> } | { ok: false; res: Response }> {
  let body: unknown;
  try {
    body = await req.json();
  } catch {
    return { ok: false, res: invalid('the body must be a JSON object') };
  }
  const r = schema.safeParse(body);
  if (r.success) return { ok: true, value: r.data };
  const errors = r.error.issues.map((i) => ({ field: i.path.join('.') || '(body)', message: i.message }));
  return { ok: false, res: invalid(errors.map((e) => `${e.field}: ${e.message}`).join('; '), errors) };
}

const notFound = (id: string) =>
  problemResponse(problem(404, 'not-found', 'Not Found', { detail: `no order with id ${id}` }));

const ID = /^[1-9]\d{0,17}$/;

/**
 * Build the orders app. Routes:
 * POST /api/orders (Idempotency-Key required; exactly-once insert through the key's transaction),
 * GET /api/orders/:id, PATCH /api/orders/:id, GET /api/orders?limit=, GET /api/whoami,
 * and the rate-limit admin API under /api/admin.
 */
export function buildApp({ runtime, rateLimits, idempotency: idem }: AppDeps): Hono<Env> {
  const app = new Hono<Env>();
  instrument(app as unknown as Hono, runtime, { instanceHeader: true });
  const pool = runtime.pg();
  const ipOf = createClientIp({ trustedProxies: runtime.config.trustedProxies });

  // Admin routes sit before the limits so an operator can always loosen them.
  app.route('/api/admin', rateLimits.admin);
  app.use('/api/*', rateLimits.middleware);

  app.get('/api/whoami', (c) =>
    c.json({ instance: runtime.instanceId, requestId: requestIdOf(c), ip: clientIpOf(c, ipOf) }),
  );

  app.post(
    '/api/orders',
    idempotency(idem, {
      identity: (c) => identityFromBearer(c.req.header('authorization')),
      trustedProxies: runtime.config.trustedProxies,
    }),
    async (c) => {
      const parsed = await parseBody(c.req, createOrderSchema);
      if (!parsed.ok) return parsed.res;
      const tx = await c.var.idempotency.tx();
      const who = identityFromBearer(c.req.header('authorization')) ?? `ip:${clientIpOf(c, ipOf)}`;
      const order = await insertOrder(tx, parsed.value, who, runtime.instanceId);
      return c.json(order, 201, { location: `/api/orders/${order.id}` });
    },
  );

  app.get('/api/orders', async (c) => {
    const raw = c.req.query('limit') ?? '20';
    const limit = /^\d{1,3}$/.test(raw) ? Number(raw) : Number.NaN;
    if (!(limit >= 1 && limit <= 100))
      return invalid(`limit: expected an integer from 1 to 100, got "${raw}"`);
    return c.json({ orders: await listOrders(pool, limit) });
  });

  app.get('/api/orders/:id', async (c) => {
    const id = c.req.param('id');
    if (!ID.test(id)) return notFound(id);
    const order = await getOrder(pool, id);
    return order ? c.json(order) : notFound(id);
  });

  app.patch('/api/orders/:id', async (c) => {
    const id = c.req.param('id');
    if (!ID.test(id)) return notFound(id);
    const parsed = await parseBody(c.req, patchOrderSchema);
    if (!parsed.ok) return parsed.res;
    const order = await patchOrder(pool, id, parsed.value);
    return order ? c.json(order) : notFound(id);
  });

  app.notFound((c) =>
    problemResponse(
      problem(404, 'not-found', 'Not Found', { detail: `no route for ${c.req.method} ${c.req.path}` }),
    ),
  );
  app.onError((err, c) => {
    runtime.log.error({ err, path: c.req.path }, 'unhandled error');
    return problemResponse(
      problem(500, 'internal', 'Internal Server Error', { detail: 'see the server log' }),
    );
  });
  return app;
}
