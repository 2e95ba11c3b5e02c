/**
 * Hono glue for `shoal/idempotency`: reads the header, scope, route and body, and exposes the
 * request's idempotency context (and its database transaction) as `c.var.idempotency`.
 */
import type { Context, MiddlewareHandler } from 'hono';
import { type ClientIpOptions, clientIpOf, createClientIp } from '../../enrich/client-ip.js';
import type { Idempotency, IdempotencyContext } from '../../idempotency/engine.js';

/** Context variables set by {@link idempotency}; add them to your app's `Variables`. */
export interface IdempotencyVariables<Tx = never> {
  idempotency: IdempotencyContext<Tx>;
}

/** Options of the Hono middleware. */
export interface HonoIdempotencyOptions {
  /** A missing key is a 400 (default true); false runs keyless requests unprotected. */
  required?: boolean;
  /** Methods the middleware acts on (default POST and PATCH); others pass straight through. */
  methods?: readonly string[];
  /**
   * Who the key belongs to. Default: `id:` + `identity(c)` when that returns a value, else
   * `ip:` + the client IP (trusted-proxy aware).
   */
  scope?: (c: Context) => string | Promise<string>;
  /** The authenticated principal, e.g. `(c) => c.get('user')?.id`. */
  identity?: (c: Context) => string | undefined;
  /** Proxies whose X-Forwarded-For is believed when the default scope falls back to the IP. */
  trustedProxies?: ClientIpOptions['trustedProxies'];
  /** The target the key applies to (default: path and query of the request URL). */
  route?: (c: Context) => string;
}

const JSON_TYPE = /^application\/(?:[\w.+-]*\+)?json\b/i;

function routeOf(c: Context): string {
  const url = c.req.url;
  const start = url.indexOf('/', url.indexOf('//') + 2);
  return start === -1 ? '/' : url.slice(start);
}

/**
 * Idempotency middleware. Handlers in transactional mode write through `c.var.idempotency.tx()`.
 *
 * @example
 * type Env = { Variables: IdempotencyVariables<PgClient> };
 * const app = new Hono<Env>();
 * const idem = createIdempotency({ store: postgresIdempotencyStore({ pool }) });
 * app.post('/api/orders', idempotency(idem), async (c) => {
 *   const tx = await c.var.idempotency.tx();
 *   const { rows } = await tx.query('INSERT INTO orders (sku) VALUES ($1) RETURNING id', [(await c.req.json()).sku]);
 *   return c.json({ id: rows[0].id }, 201);
 * });
 */
export function idempotency<Tx = never>(
  engine: Idempotency<Tx>,
  options: HonoIdempotencyOptions = {},
): MiddlewareHandler<{ Variables: IdempotencyVariables<Tx> }> {
  const methods = new Set((options.methods ?? ['POST', 'PATCH']).map((m) => m.toUpperCase()));
  const required = options.required ?? true;
  const route = options.route ?? routeOf;
  let scope = options.scope;
  if (!scope) {
    const resolver = createClientIp({ trustedProxies: options.trustedProxies });
    const identity = options.identity;
    // A connection's peer never changes, so the IP scope is remembered per socket for as long as
    // the request's X-Forwarded-For is the same (keep-alive clients resend the same one).
    const bySocket = new WeakMap<object, { forwarded: string | undefined; scope: string }>();
    scope = (c) => {
      const who = identity?.(c);
      if (who !== undefined && who !== '') return `id:${who}`;
      const socket = (c.env as { incoming?: { socket?: object } } | undefined)?.incoming?.socket;
      if (socket === undefined) return `ip:${clientIpOf(c, resolver)}`;
      const forwarded = c.req.header('x-forwarded-for');
      const hit = bySocket.get(socket);
      if (hit !== undefined && hit.forwarded === forwarded) return hit.scope;
      const ip = `ip:${clientIpOf(c, resolver)}`;
      bySocket.set(socket, { forwarded, scope: ip });
      return ip;
    };
  }
  const scopeOf = scope;

  return async (c, next) => {
    if (!methods.has(c.req.method)) return next();
    const contentType = c.req.header('content-type');
    let ran = false;
    const res = await engine.handle(
      {
        keyHeader: c.req.header('idempotency-key'),
        method: c.req.method,
        route: route(c),
        scope: () => scopeOf(c),
        contentType,
        // Read through Hono's body cache so the handler can still call c.req.json()/text().
        body: () =>
          contentType !== undefined && JSON_TYPE.test(contentType)
            ? c.req.text()
            : c.req.arrayBuffer().then((b) => new Uint8Array(b)),
        required,
      },
      async (ctx) => {
        c.set('idempotency', ctx);
        ran = true;
        await next();
        // Hono turns a thrown handler error into c.error + an error response; the engine must
        // see it as a failure so it rolls back and releases the key.
        if (c.error) throw c.error;
        return c.res;
      },
    );
    // Reassigning the same response would make Hono copy it (and turn its body into a stream).
    if (!ran) return res;
    if (res !== c.res) c.res = res;
  };
}
