/**
 * OpenTelemetry tracing, switched on by `OTEL_EXPORTER_OTLP_ENDPOINT` and otherwise absent.
 *
 * The OpenTelemetry packages are optional peers: they are imported lazily, only when an endpoint is
 * configured, so a service that does not trace neither installs nor loads them.
 */

/** The packages loaded when tracing is on; install them next to shoal to enable tracing. */
export const TRACING_PACKAGES = [
  '@opentelemetry/api',
  '@opentelemetry/sdk-trace-node',
  '@opentelemetry/exporter-trace-otlp-http',
  '@opentelemetry/resources',
] as const;

/** The server span of one request, as the Hono middleware drives it. */
export interface RequestSpan {
  traceId: string;
  spanId: string;
  /** Name the span after the route pattern, record the status and end it. */
  finish(route: string, status: number): void;
}

/** A running tracer; returned by {@link startTracing}. */
export interface Tracing {
  /** Flush buffered spans and unregister the global provider. */
  stop(): Promise<void>;
  /**
   * Run `fn` inside a server span whose parent comes from the incoming `traceparent` header,
   * so spans created by instrumentations (pg, ioredis, outgoing fetch) nest under it.
   */
  inServerSpan<T>(method: string, headers: Headers, fn: (span: RequestSpan) => Promise<T>): Promise<T>;
}

/** Options for {@link startTracing}. */
export interface TracingOptions {
  service: string;
  instanceId: string;
  /** OTLP/HTTP base endpoint; default `process.env.OTEL_EXPORTER_OTLP_ENDPOINT`. */
  endpoint?: string;
  /** Told once when an endpoint is set but the packages are missing (default: a process warning). */
  warn?: (message: string) => void;
  /** Where the packages are resolved from (a module URL); default this module. For tests and bundlers. */
  importFrom?: (specifier: string) => Promise<unknown>;
}

// Minimal shapes of the OpenTelemetry API used here, so the packages stay optional at compile time.
interface OtelSpan {
  spanContext(): { traceId: string; spanId: string };
  updateName(name: string): void;
  setAttribute(key: string, value: string | number): void;
  setStatus(status: { code: number }): void;
  end(): void;
}
interface OtelApi {
  ROOT_CONTEXT: unknown;
  SpanKind: { SERVER: number };
  SpanStatusCode: { ERROR: number };
  context: { with<T>(ctx: unknown, fn: () => T): T; disable(): void };
  propagation: {
    extract(
      ctx: unknown,
      carrier: Headers,
      getter: { keys(c: Headers): string[]; get(c: Headers, k: string): string | undefined },
    ): unknown;
    disable(): void;
  };
  trace: {
    setSpan(ctx: unknown, span: OtelSpan): unknown;
    getTracer(name: string): {
      startSpan(
        name: string,
        options: { kind: number; attributes: Record<string, string> },
        ctx: unknown,
      ): OtelSpan;
    };
    disable(): void;
  };
}
type Ctor<T> = new (...args: unknown[]) => T;
interface Provider {
  register(): void;
  forceFlush(): Promise<void>;
  shutdown(): Promise<void>;
}

const headerGetter = {
  keys: (h: Headers) => [...h.keys()],
  get: (h: Headers, k: string) => h.get(k) ?? undefined,
};

/**
 * Start exporting traces over OTLP/HTTP when an endpoint is configured; resolves to `undefined`
 * (tracing off, nothing loaded) when none is. When an endpoint is set but the OpenTelemetry
 * packages are not installed, it warns once and resolves to `undefined`: a missing tracer never
 * stops a service from starting.
 *
 * @example
 * const tracing = await startTracing({ service: 'orders', instanceId: 'orders-1' });
 * app.use(observe({ logger, metrics, instanceId: 'orders-1', tracing }));
 * // on shutdown
 * await tracing?.stop();
 */
export async function startTracing(opts: TracingOptions): Promise<Tracing | undefined> {
  const endpoint = opts.endpoint ?? process.env.OTEL_EXPORTER_OTLP_ENDPOINT;
  if (!endpoint || endpoint.trim() === '') return undefined;
  const load = opts.importFrom ?? ((s: string) => import(s));
  let api: OtelApi;
  let node: { NodeTracerProvider: Ctor<Provider>; BatchSpanProcessor: Ctor<unknown> };
  let otlp: { OTLPTraceExporter: Ctor<unknown> };
  let resources: { resourceFromAttributes(a: Record<string, string>): unknown };
  try {
    [api, node, otlp, resources] = (await Promise.all(TRACING_PACKAGES.map((p) => load(p)))) as [
      OtelApi,
      typeof node,
      typeof otlp,
      typeof resources,
    ];
  } catch (err) {
    const message =
      `OTEL_EXPORTER_OTLP_ENDPOINT is set (${endpoint}) but tracing is off: ` +
      `install ${TRACING_PACKAGES.join(' ')} to enable it ` +
      `(${err instanceof Error ? err.message : String(err)})`;
    if (opts.warn) opts.warn(message);
    else process.emitWarning(message, { code: 'SHOAL_TRACING_UNAVAILABLE' });
    return undefined;
  }

  // A per-signal endpoint in the environment wins; otherwise the base endpoint gets the traces path.
  const exporter = process.env.OTEL_EXPORTER_OTLP_TRACES_ENDPOINT
    ? new otlp.OTLPTraceExporter()
    : new otlp.OTLPTraceExporter({ url: `${endpoint.replace(/\/+$/, '')}/v1/traces` });
  const provider = new node.NodeTracerProvider({
    resource: resources.resourceFromAttributes({
      'service.name': opts.service,
      'service.instance.id': opts.instanceId,
    }),
    spanProcessors: [new node.BatchSpanProcessor(exporter)],
  });
  // OpenTelemetry is process-wide by design (instrumentations find the provider through the global
  // API), so registering is what makes spans from pg/ioredis/fetch instrumentation nest.
  provider.register();
  const tracer = api.trace.getTracer('shoal');

  return {
    async stop() {
      await provider.forceFlush().catch(() => {});
      await provider.shutdown().catch(() => {});
      api.trace.disable();
      api.context.disable();
      api.propagation.disable();
    },
    inServerSpan(method, headers, fn) {
      const parent = api.propagation.extract(api.ROOT_CONTEXT, headers, headerGetter);
      const span = tracer.startSpan(
        method,
        { kind: api.SpanKind.SERVER, attributes: { 'http.request.method': method } },
        parent,
      );
      const { traceId, spanId } = span.spanContext();
      const requestSpan: RequestSpan = {
        traceId,
        spanId,
        finish(route, status) {
          span.updateName(`${method} ${route}`);
          span.setAttribute('http.route', route);
          span.setAttribute('http.response.status_code', status);
          if (status >= 500) span.setStatus({ code: api.SpanStatusCode.ERROR });
          span.end();
        },
      };
      return api.context.with(api.trace.setSpan(parent, span), () => fn(requestSpan));
    },
  };
}
