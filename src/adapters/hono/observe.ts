/**
 * Hono glue for shoal/observe: request ids, one log line per request, request metrics and
 * (when tracing is on) a server span per request.
 */
import type { IncomingMessage, ServerResponse } from 'node:http';
import type { Context, Handler, Hono, MiddlewareHandler } from 'hono';
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

// Route patterns and methods are few, so their JSON forms are cached; the bound covers apps that
// register routes dynamically. One cache per middleware/listener object, never per module.
function jsonQuoter(): (s: string) => string {
  const cache = new Map<string, string>();
  return (s) => {
    let q = cache.get(s);
    if (q === undefined) {
      q = JSON.stringify(s);
      if (cache.size < 1000) cache.set(s, q);
    }
    return q;
  };
}

type RecordRequest = (
  fallback: Logger,
  fallbackWithId: boolean,
  requestId: string,
  traceId: string | undefined,
  method: string,
  route: string,
  status: number,
  ms: number,
) => void;

/**
 * The ONE request log line and the request metrics, the same for the middleware and the
 * server-level listener. Loggers from createLogger take the line pre-serialised (same bytes, no
 * generic object walk); any other pino logger gets an ordinary call on `fallback`, with
 * `request_id` in the fields when `fallbackWithId` (i.e. `fallback` does not carry it already).
 */
function requestRecorder(logger: Logger, metrics: Metrics | undefined): RecordRequest {
  const writeLine = requestLineWriter(logger);
  const quoted = jsonQuoter();
  return (fallback, fallbackWithId, requestId, traceId, method, route, status, ms) => {
    const latency = Math.round(ms * 1000) / 1000;
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
      const line = fallbackWithId
        ? { request_id: requestId, method, route, status, latency_ms: latency }
        : { method, route, status, latency_ms: latency };
      if (status >= 500) fallback.error(line, 'request');
      else fallback.info(line, 'request');
    }
    if (metrics) {
      metrics.observeRequest(route, method, status, ms / 1000);
      metrics.requestFinished();
    }
  };
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
  const record = requestRecorder(logger, metrics);

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
    record(log, false, requestId, traceId, c.req.method, route, status, performance.now() - start);
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
  return rawRequestId(raw);
}

/** `X-Request-Id` from Node's raw header list; several of them are ambiguous and count as none. */
function rawRequestId(raw: string[]): string | undefined {
  for (let i = 0; i < raw.length; i += 2) {
    const name = raw[i] as string;
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

// Where the server-level listener leaves a request's id and root logger: on Node's request object,
// which handlers reach as `c.env.incoming` on @hono/node-server.
const SERVER_OBSERVED = Symbol.for('shoal.observe.request');

interface ServerObserved {
  requestId: string;
  root: Logger;
  log: Logger | undefined;
}

type ObservedIncoming = IncomingMessage & { [SERVER_OBSERVED]?: ServerObserved };

function serverObserved(c: Context): ServerObserved | undefined {
  return (c.env as { incoming?: ObservedIncoming } | undefined)?.incoming?.[SERVER_OBSERVED];
}

/**
 * The request id of the current request, whichever way it is observed: the {@link observe}
 * middleware (`c.var.requestId`) or the server-level listener that `serve()` installs with
 * `observeAt: 'server'`. Undefined when the request is not observed at all.
 *
 * @example
 * app.get('/api/whoami', (c) => c.json({ requestId: requestIdOf(c) }));
 */
export function requestIdOf(c: Context): string | undefined {
  const own = serverObserved(c);
  if (own !== undefined) return own.requestId;
  return (c as Context<ObserveEnv>).get('requestId');
}

/**
 * The request logger (a child carrying `request_id`) of the current request, in either observe
 * mode. In server mode the child is made on first use, so requests that never log pay nothing.
 * Undefined when the request is not observed.
 *
 * @example
 * app.get('/api/orders/:id', (c) => {
 *   logOf(c)?.info({ order: c.req.param('id') }, 'loading order');
 *   return c.json({ id: c.req.param('id') });
 * });
 */
export function logOf(c: Context): Logger | undefined {
  const own = serverObserved(c);
  if (own !== undefined) {
    own.log ??= own.root.child({ request_id: own.requestId });
    return own.log;
  }
  return (c as Context<ObserveEnv>).get('log');
}

/** A Node `request` listener, as `http.createServer()` takes. */
export type NodeRequestListener = (incoming: IncomingMessage, outgoing: ServerResponse) => unknown;

type RouterEntry = [[unknown, { method: string; path: string }], unknown];

/**
 * The route pattern a request will be answered by, from a second lookup in the app's own router
 * (which keeps Hono's single-handler fast path intact, unlike a `'*'` middleware). The answering
 * route is taken to be the first match that is not a wildcard `use()`/`all()` middleware.
 */
function routeResolver(app: Hono, unmatched: string): (method: string, url: string) => string {
  const router = app.router as unknown as { match(method: string, path: string): [RouterEntry[], unknown] };
  return (method, url) => {
    let end = url.indexOf('?');
    if (end === -1) end = url.length;
    let path = url.slice(0, end);
    if (path.includes('%')) {
      try {
        path = decodeURI(path);
      } catch {
        // Left as sent; Hono does the same with undecodable paths.
      }
    }
    if (path.charCodeAt(0) !== 47) path = `/${path}`;
    const [entries] = router.match(method === 'HEAD' ? 'GET' : method, path);
    for (let i = 0; i < entries.length; i++) {
      const r = (entries[i] as RouterEntry)[0][1];
      if (r.method === 'ALL' && r.path.endsWith('*')) continue;
      return r.path;
    }
    return unmatched;
  };
}

/** Options for {@link observeServer}: those of {@link observe} without tracing, plus quiet routes. */
export interface ObserveServerOptions extends Omit<ObserveOptions, 'tracing'> {
  /** Route patterns (e.g. the health probes) answered without a request log line or metrics. */
  unobservedRoutes?: Iterable<string>;
}

/**
 * Observe a Hono app at the Node `http` layer instead of as a middleware: wraps a request
 * listener (normally @hono/node-server's) so each request gets its id (accepted or minted,
 * echoed as `X-Request-Id`, plus `X-Instance-Id` when asked), is counted in flight, and when the
 * listener has written the response, yields ONE request log line and its metrics — the same
 * fields and bytes as {@link observe}. The app itself keeps no middleware, so Hono's fast path
 * for single-handler routes stays on. Handlers read the id and logger with
 * {@link requestIdOf}/{@link logOf} (`c.var.requestId` is not set in this mode). `serve()` uses
 * this with `observeAt: 'server'`; tracing is only available through the middleware.
 *
 * @example
 * const listener = observeServer(app, getRequestListener(app.fetch), { logger, metrics, instanceId });
 * http.createServer(listener).listen(3000);
 */
export function observeServer(
  app: Hono,
  listener: (incoming: IncomingMessage, outgoing: ServerResponse) => unknown,
  opts: ObserveServerOptions,
): NodeRequestListener {
  const { logger, metrics, instanceId } = opts;
  const instanceHeader = opts.instanceHeader ?? false;
  const routeOf = routeResolver(app, opts.unmatchedRoute ?? 'unmatched');
  const quiet = new Set(opts.unobservedRoutes ?? []);
  const record = requestRecorder(logger, metrics);

  const finish = (
    incoming: IncomingMessage,
    outgoing: ServerResponse,
    requestId: string,
    start: number,
    failed: boolean,
  ): void => {
    const method = incoming.method ?? 'GET';
    const route = routeOf(method, incoming.url ?? '/');
    if (quiet.has(route)) {
      metrics?.requestFinished();
      return;
    }
    const status = failed && !outgoing.headersSent ? 500 : outgoing.statusCode;
    record(logger, true, requestId, undefined, method, route, status, performance.now() - start);
  };

  return (incoming, outgoing) => {
    const start = performance.now();
    const requestId = acceptRequestId(rawRequestId(incoming.rawHeaders));
    (incoming as ObservedIncoming)[SERVER_OBSERVED] = { requestId, root: logger, log: undefined };
    outgoing.setHeader('X-Request-Id', requestId);
    if (instanceHeader) outgoing.setHeader('X-Instance-Id', instanceId);
    metrics?.requestStarted();
    let result: unknown;
    try {
      result = listener(incoming, outgoing);
    } catch (err) {
      finish(incoming, outgoing, requestId, start, true);
      throw err;
    }
    // @hono/node-server's listener settles once the response is written (streams included).
    if (result instanceof Promise) {
      return result.then(
        () => finish(incoming, outgoing, requestId, start, false),
        (err: unknown) => {
          finish(incoming, outgoing, requestId, start, true);
          throw err;
        },
      );
    }
    finish(incoming, outgoing, requestId, start, false);
    return result;
  };
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
