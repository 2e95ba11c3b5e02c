/**
 * Hono glue for shoal/observe: request ids, one log line per request, request metrics and
 * (when tracing is on) a server span per request.
 */
import type { Context, Handler, MiddlewareHandler } from 'hono';
import { routePath } from 'hono/route';
import { type Logger, requestLineWriter } from '../../observe/log.js';
import type { Metrics } from '../../observe/metrics.js';
import { acceptRequestId } from '../../observe/request-id.js';
import type { Tracing } from '../../observe/tracing.js';

/** What {@link observe} puts on the context: `c.var.requestId` and `c.var.log`. */
export type ObserveVariables = {
  requestId: string;
  /** A child of the root logger carrying `request_id` (and `trace_id` when tracing). */
  log: Logger;
};

/** A Hono `Env` carrying {@link ObserveVariables}: `new Hono<ObserveEnv>()`. */
export type ObserveEnv = { Variables: ObserveVariables };

/** The part of Node's `ServerResponse` (as `c.env.outgoing` on @hono/node-server) used here. */
interface NodeResponseLike {
  setHeader(name: string, value: string): unknown;
  headersSent: boolean;
}

/** Options for {@link observe}. */
export interface ObserveOptions {
  /** Root logger (see `createLogger`); its base fields should carry `instance_id`. */
  logger: Logger;
  metrics?: Metrics;
  instanceId: string;
  /** Send `X-Instance-Id` on every response (which replica answered); default false. */
  instanceHeader?: boolean;
  /** From `startTracing()`; when set, each request runs inside a server span. */
  tracing?: Tracing;
  /** Route label for requests no route matched (kept constant so 404 scans cannot blow up cardinality). */
  unmatchedRoute?: string;
}

/**
 * Middleware for request ids, request logs and request metrics. Mount it first so it sees
 * every request, including ones that later middleware rejects.
 *
 * Per request: accepts a well-formed `X-Request-Id` or generates one and echoes it; sets
 * `c.var.requestId` and `c.var.log`; writes ONE line (`request_id`, `method`, `route` — the
 * matched pattern such as `/api/orders/:id`, never the raw path — `status`, `latency_ms`) at
 * `info`, or `error` for 5xx; counts the request and its duration by route/method/status.
 *
 * @example
 * const app = new Hono<ObserveEnv>();
 * app.use(observe({ logger, metrics, instanceId, instanceHeader: true }));
 * app.get('/metrics', metricsHandler(metrics));
 * app.get('/api/orders/:id', (c) => {
 *   c.var.log.info({ order: c.req.param('id') }, 'loading order');
 *   return c.json({ id: c.req.param('id') });
 * });
 */
export function observe(opts: ObserveOptions): MiddlewareHandler<ObserveEnv> {
  const { logger, metrics, instanceId, tracing } = opts;
  const instanceHeader = opts.instanceHeader ?? false;
  const unmatched = opts.unmatchedRoute ?? 'unmatched';
  // Loggers from createLogger take the request line pre-serialised: same bytes, no generic
  // object walk. Any other pino logger gets an ordinary log call.
  const writeLine = requestLineWriter(logger);
  // Route patterns and methods are few; their JSON forms are cached (bounded, in case an app
  // registers routes dynamically).
  const quotedCache = new Map<string, string>();
  const quoted = (s: string): string => {
    let q = quotedCache.get(s);
    if (q === undefined) {
      q = JSON.stringify(s);
      if (quotedCache.size < 1000) quotedCache.set(s, q);
    }
    return q;
  };

  // On @hono/node-server the Node response is at hand: headers set there before the handler runs
  // are merged into whatever it returns, and keep the adapter's fast path for plain responses
  // (touching `c.res.headers` afterwards would materialise a fetch Headers object per request).
  const presetHeaders = (c: Context<ObserveEnv>, requestId: string): boolean => {
    const out = (c.env as { outgoing?: NodeResponseLike } | undefined)?.outgoing;
    if (out === undefined || typeof out.setHeader !== 'function' || out.headersSent) return false;
    out.setHeader('X-Request-Id', requestId);
    if (instanceHeader) out.setHeader('X-Instance-Id', instanceId);
    return true;
  };

  const finish = (
    c: Context<ObserveEnv>,
    log: Logger,
    ownIndex: number,
    requestId: string,
    traceId: string | undefined,
    start: number,
    headersDone: boolean,
    failed: boolean,
  ): string => {
    // After next() the route index points at the handler that answered; if it still points at
    // this middleware, nothing after it matched.
    const route = c.req.routeIndex === ownIndex ? unmatched : routePath(c) || unmatched;
    const status = failed ? 500 : c.res.status;
    if (!failed && !headersDone) {
      try {
        c.res.headers.set('X-Request-Id', requestId);
        if (instanceHeader) c.res.headers.set('X-Instance-Id', instanceId);
      } catch {
        // Immutable headers (a Response passed through from fetch()): copy it once.
        c.res = new Response(c.res.body, c.res);
        c.res.headers.set('X-Request-Id', requestId);
        if (instanceHeader) c.res.headers.set('X-Instance-Id', instanceId);
      }
    }
    const ms = performance.now() - start;
    const latency = Math.round(ms * 1000) / 1000;
    const method = c.req.method;
    if (writeLine) {
      // request_id is well-formed by construction (or a UUID), trace ids are hex: no escaping.
      const ids =
        traceId === undefined
          ? `,"request_id":"${requestId}"`
          : `,"request_id":"${requestId}","trace_id":"${traceId}"`;
      writeLine(
        status >= 500 ? 'error' : 'info',
        `${ids},"method":${quoted(method)},"route":${quoted(route)},"status":${status},"latency_ms":${latency}`,
        'request',
      );
    } else {
      const line = { method, route, status, latency_ms: latency };
      if (status >= 500) log.error(line, 'request');
      else log.info(line, 'request');
    }
    if (metrics) {
      metrics.observeRequest(route, method, status, ms / 1000);
      metrics.requestFinished();
    }
    return route;
  };

  const run = (
    c: Context<ObserveEnv>,
    next: () => Promise<void>,
    requestId: string,
    traceId: string | undefined,
    onRoute?: (route: string) => void,
  ): Promise<void> => {
    const start = performance.now();
    const ownIndex = c.req.routeIndex;
    const headersDone = presetHeaders(c, requestId);
    const log = logger.child(
      traceId === undefined ? { request_id: requestId } : { request_id: requestId, trace_id: traceId },
    );
    c.set('requestId', requestId);
    c.set('log', log);
    metrics?.requestStarted();
    return next().then(
      () => {
        const route = finish(c, log, ownIndex, requestId, traceId, start, headersDone, false);
        onRoute?.(route);
      },
      (err: unknown) => {
        // Hono normally turns handler errors into responses before they reach here; this is for
        // compositions without an error handler.
        finish(c, log, ownIndex, requestId, traceId, start, headersDone, true);
        throw err;
      },
    );
  };

  const traced = (c: Context<ObserveEnv>, next: () => Promise<void>, requestId: string, t: Tracing) =>
    t.inServerSpan(c.req.method, c.req.raw.headers, async (span) => {
      let route = unmatched;
      let status = 500;
      try {
        await run(c, next, requestId, span.traceId, (r) => {
          route = r;
        });
        status = c.res.status;
      } finally {
        span.finish(route, status);
      }
    });

  return function shoalObserve(c, next) {
    const requestId = acceptRequestId(incomingRequestId(c));
    if (tracing) return traced(c, next, requestId, tracing);
    return run(c, next, requestId, undefined);
  };
}

/**
 * The raw `X-Request-Id` value. On @hono/node-server it is read from Node's raw header list, which
 * avoids building a header object for every request just to look up one name.
 */
function incomingRequestId(c: Context<ObserveEnv>): string | undefined {
  const raw = (c.env as { incoming?: { rawHeaders?: string[] } } | undefined)?.incoming?.rawHeaders;
  if (!Array.isArray(raw)) return c.req.header('x-request-id');
  for (let i = 0; i < raw.length; i += 2) {
    const name = raw[i] as string;
    // Several X-Request-Id headers would be ambiguous: treat them as none.
    if (name.length === 12 && name.toLowerCase() === 'x-request-id') {
      for (let j = i + 2; j < raw.length; j += 2) {
        const other = raw[j] as string;
        if (other.length === 12 && other.toLowerCase() === 'x-request-id') return undefined;
      }
      return raw[i + 1];
    }
  }
  return undefined;
}

/**
 * `GET /metrics` handler: the registry in Prometheus text format.
 *
 * @example
 * app.get('/metrics', metricsHandler(metrics));
 */
export function metricsHandler(metrics: Metrics): Handler {
  return async (c) => {
    const body = await metrics.render();
    return c.body(body, 200, { 'Content-Type': metrics.contentType, 'Cache-Control': 'no-store' });
  };
}
