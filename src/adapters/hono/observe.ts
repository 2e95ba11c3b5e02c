/**
 * Hono glue for shoal/observe: request ids, one log line per request, request metrics and
 * (when tracing is on) a server span per request.
 */
import {
  createServer,
  type IncomingMessage,
  type Server,
  type ServerOptions,
  ServerResponse,
} from 'node:http';
// The module's binding rather than the global: Node defines the global lazily, so every read of it
// is a property lookup on the global object.
import { performance } from 'node:perf_hooks';
import { getRequestListener } from '@hono/node-server';
import type { Context, Handler, Hono, MiddlewareHandler } from 'hono';
import { routePath } from 'hono/route';
import { type Logger, requestLineWriter, requestRecordWriter } from '../../observe/log.js';
import type { Metrics } from '../../observe/metrics.js';
import { acceptRequestId, createRequestIdMinter } from '../../observe/request-id.js';
import type { Tracing } from '../../observe/tracing.js';
import { latencyText } from '../../util/latency-text.js';

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
  // With a threaded destination the line is formatted on the writer thread from its parts.
  const writeRecord = requestRecordWriter(logger);
  const quoted = jsonQuoter();
  return (fallback, fallbackWithId, requestId, traceId, method, route, status, ms) => {
    if (
      writeRecord !== undefined &&
      traceId === undefined &&
      writeRecord(status >= 500 ? 'error' : 'info', requestId, method, route, status, ms)
    ) {
      // Taken.
    } else if (writeLine) {
      // request_id is well-formed by construction (or a UUID), trace ids are hex: no escaping.
      const ids =
        traceId === undefined
          ? `,"request_id":"${requestId}"`
          : `,"request_id":"${requestId}","trace_id":"${traceId}"`;
      writeLine(
        status >= 500 ? 'error' : 'info',
        `${ids},"method":${quoted(method)},"route":${quoted(route)},"status":${status},"latency_ms":${latencyText(ms)}`,
        'request',
      );
    } else {
      const latency = Math.round(ms * 1000) / 1000;
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
  const mint = createRequestIdMinter();

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
    const requestId = acceptRequestId(incomingRequestId(c), mint);
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
    if (isHeaderName(raw[i] as string, 'x-request-id')) {
      for (let j = i + 2; j < raw.length; j += 2) {
        if (isHeaderName(raw[j] as string, 'x-request-id')) return undefined;
      }
      return raw[i + 1];
    }
  }
  return undefined;
}

// Whether a header name is `lower` (a lower-case name starting with a letter) in any case. The
// name is lower-cased only when its length and first letter already match: 'Content-Type' has
// the length of 'x-request-id', and lower-casing it made a new string on every request.
function isHeaderName(name: string, lower: string): boolean {
  return (
    name.length === lower.length &&
    (name.charCodeAt(0) | 32) === lower.charCodeAt(0) &&
    name.toLowerCase() === lower
  );
}

function serverObserved(c: Context): ObservedOutgoing | undefined {
  const out = (c.env as { outgoing?: Partial<ObservedOutgoing> } | undefined)?.outgoing;
  return out !== undefined && typeof out.shoalRequestId === 'string' ? (out as ObservedOutgoing) : undefined;
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
  if (own !== undefined) return own.shoalRequestId;
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
    own.shoalLog ??= own.shoalRoot.child({ request_id: own.shoalRequestId });
    return own.shoalLog;
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

/** Options for {@link createObservedServer}: those of {@link observe} without tracing, plus a few. */
export interface ObservedServerOptions extends Omit<ObserveOptions, 'tracing'> {
  /** Route patterns (e.g. the health probes) answered without a request log line or metrics. */
  unobservedRoutes?: Iterable<string>;
  /** The Node request listener to run; default @hono/node-server's `getRequestListener(app.fetch)`. */
  listener?: NodeRequestListener;
  /** Passed to `http.createServer` (its `ServerResponse` option is the observer's own). */
  serverOptions?: Omit<ServerOptions, 'ServerResponse'>;
}

// Per-request state, kept on Node's response object (handlers reach it as `c.env.outgoing`).
// Plain named properties: see the note on the constructor below.
interface ObservedOutgoing extends ServerResponse {
  shoalRequestId: string;
  shoalStart: number;
  shoalDone: boolean;
  shoalLog: Logger | undefined;
  /** On the prototype: the server's root logger. */
  shoalRoot: Logger;
  shoalHeaders(given: unknown): unknown;
  shoalRecord(aborted: boolean): void;
}

// Node calls its response class with (req, options); @types/node declares only req.
const nodeResponse = ServerResponse as unknown as (
  this: ServerResponse,
  req: IncomingMessage,
  options?: unknown,
) => void;

/**
 * An `http.Server` that observes a Hono app at the Node layer instead of through a middleware:
 * each request gets its id (accepted or minted, echoed as `X-Request-Id`, plus `X-Instance-Id`
 * when asked), is counted in flight, and once its response is finished (or the client went away)
 * yields ONE request log line and its metrics — the same fields and bytes as {@link observe}.
 *
 * The work is done by the server's own response class (set up when Node creates the response,
 * headers added inside `writeHead`, the line written on `finish`), so the app keeps no middleware
 * and Hono keeps its fast path for single-handler routes, and nothing wraps the listener. Handlers
 * read the id and logger with {@link requestIdOf}/{@link logOf} (`c.var.requestId` is not set in
 * this mode). `serve()` builds its server with this unless `observeAt: 'middleware'`.
 *
 * @example
 * const server = createObservedServer(app, { logger, metrics, instanceId, instanceHeader: true });
 * server.listen(3000);
 */
export function createObservedServer(app: Hono, opts: ObservedServerOptions): Server {
  const { logger, metrics, instanceId } = opts;
  const instanceHeader = opts.instanceHeader ?? false;
  const routeOf = routeResolver(app, opts.unmatchedRoute ?? 'unmatched');
  const quiet = new Set(opts.unobservedRoutes ?? []);
  const record = requestRecorder(logger, metrics);
  const listener = opts.listener ?? getRequestListener(app.fetch);
  const mint = createRequestIdMinter();

  // One response type per server (it closes over this server's logger and metrics), never per
  // module. Written as a plain constructor function rather than `class extends ServerResponse`:
  // measured on Node 20, a derived class (or a constructor that adds no properties of its own)
  // leaves V8 with too little room in the object layout for Node's ~40 response fields, which
  // then live in a slow out-of-object store and cost ~10 us per request in Node's own code.
  // Assigning our fields here gives V8 the estimate it needs.
  function ObservedResponse(this: ObservedOutgoing, req: IncomingMessage, options?: unknown): void {
    nodeResponse.call(this, req, options);
    this.shoalStart = performance.now();
    this.shoalRequestId = acceptRequestId(rawRequestId(req.rawHeaders), mint);
    this.shoalDone = false;
    this.shoalLog = undefined;
    metrics?.requestStarted();
  }
  Object.setPrototypeOf(ObservedResponse, ServerResponse);
  const proto = Object.create(ServerResponse.prototype) as ObservedOutgoing;
  ObservedResponse.prototype = proto;
  Object.defineProperty(proto, 'constructor', {
    value: ObservedResponse,
    writable: true,
    configurable: true,
  });
  proto.shoalRoot = logger;
  const nodeWriteHead = ServerResponse.prototype.writeHead as (
    this: ServerResponse,
    s: number,
    x?: unknown,
    y?: unknown,
  ) => ServerResponse;
  const nodeEmit = ServerResponse.prototype.emit as (
    this: ServerResponse,
    event: string | symbol,
    ...args: unknown[]
  ) => boolean;

  // Node routes every way of starting a response (explicit writeHead, implicit headers on the
  // first write/end) through writeHead. Adding the ids to the headers handed over here costs far
  // less than setHeader() up front, which switches Node to its slower merged-headers path.
  proto.writeHead = function writeHead(this: ObservedOutgoing, status: number, a?: unknown, b?: unknown) {
    const withReason = typeof a === 'string';
    const given = withReason ? b : a;
    const headers = this.hasHeader('x-request-id') ? given : this.shoalHeaders(given);
    return withReason
      ? nodeWriteHead.call(this, status, a, headers)
      : nodeWriteHead.call(this, status, headers);
  } as ObservedOutgoing['writeHead'];

  proto.shoalHeaders = function shoalHeaders(this: ObservedOutgoing, given: unknown): unknown {
    const id = this.shoalRequestId;
    if (given === undefined || given === null) {
      return instanceHeader ? { 'X-Request-Id': id, 'X-Instance-Id': instanceId } : { 'X-Request-Id': id };
    }
    if (Array.isArray(given)) {
      // Node takes either a flat [name, value, ...] list or a list of pairs.
      const out: unknown[] = [...given];
      if (given.length > 0 && Array.isArray(given[0])) {
        out.push(['X-Request-Id', id]);
        if (instanceHeader) out.push(['X-Instance-Id', instanceId]);
      } else {
        out.push('X-Request-Id', id);
        if (instanceHeader) out.push('X-Instance-Id', instanceId);
      }
      return out;
    }
    // The caller's object may be shared between responses: never write into it. A response
    // that carries its own X-Request-Id / X-Instance-Id (any case) keeps it.
    const own = given as Record<string, unknown>;
    let hasId = false;
    let hasInstance = !instanceHeader;
    for (const key in own) {
      if (isHeaderName(key, 'x-request-id')) hasId = true;
      else if (isHeaderName(key, 'x-instance-id')) hasInstance = true;
    }
    const out: Record<string, unknown> = {};
    if (!hasId) out['X-Request-Id'] = id;
    if (!hasInstance) out['X-Instance-Id'] = instanceId;
    for (const key in own) out[key] = own[key];
    return out;
  };

  // 'finish': the response is handed to the OS; 'close' first: the client went away (or the
  // socket failed) before that. Either way the request is recorded once.
  // Every event of every response passes here ('prefinish', 'finish', 'close' at least), so the
  // arguments are handed on as they came rather than gathered into a rest array and spread again.
  proto.emit = function emit(this: ObservedOutgoing, event: string | symbol): boolean {
    if (!this.shoalDone && (event === 'finish' || event === 'close')) {
      this.shoalDone = true;
      this.shoalRecord(event === 'close');
    }
    // biome-ignore lint/complexity/noArguments: forwards every argument without copying them
    return nodeEmit.apply(this, arguments as unknown as [string | symbol, ...unknown[]]);
  } as ObservedOutgoing['emit'];

  proto.shoalRecord = function shoalRecord(this: ObservedOutgoing, aborted: boolean): void {
    const req = this.req;
    const method = req.method ?? 'GET';
    const route = routeOf(method, req.url ?? '/');
    if (quiet.has(route)) {
      metrics?.requestFinished();
      return;
    }
    // nginx's convention for "client closed the connection before the response was sent".
    const status = aborted && !this.headersSent ? 499 : this.statusCode;
    record(
      logger,
      true,
      this.shoalRequestId,
      undefined,
      method,
      route,
      status,
      performance.now() - this.shoalStart,
    );
  };

  return createServer(
    { ...opts.serverOptions, ServerResponse: ObservedResponse as unknown as typeof ServerResponse },
    listener,
  );
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
