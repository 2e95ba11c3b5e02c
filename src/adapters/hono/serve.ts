/**
 * Start a Hono app on @hono/node-server with the runtime wired in: health routes, /metrics,
 * request logging/metrics middleware, keep-alive timeouts from config, and graceful shutdown.
 */

import type { Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { createAdaptorServer } from '@hono/node-server';
import type { Hono } from 'hono';
import type { ShoalRuntime } from '../../runtime.js';
import { healthRoutes } from './health.js';
import { createObservedServer, metricsHandler, observe } from './observe.js';

// Marks an app that `instrument` already set up (value: where requests are observed); stored on
// the app object the user owns.
const INSTRUMENTED = Symbol.for('shoal.instrumented');

/**
 * Where request ids, request log lines and request metrics are produced:
 * - `'server'` (default): Shoal's {@link serve} builds the Node server with
 *   {@link createObservedServer}, which does the work in the server's response object. The app
 *   keeps Hono's fast path for single-handler routes (about half the CPU cost per request of the
 *   middleware, see docs/logging.md). Handlers read the id and logger with `requestIdOf(c)` /
 *   `logOf(c)`; `c.var.requestId` is NOT set. Requests reach the observer only through `serve()`.
 * - `'middleware'`: a `'*'` Hono middleware ({@link observe}); works with any server and runtime
 *   (and `app.request()` in tests), sets `c.var.requestId` / `c.var.log`, supports tracing.
 */
export type ObserveAt = 'middleware' | 'server';

interface Instrumented {
  observeAt: ObserveAt;
  instanceHeader: boolean;
  /** Routes instrument() mounted (probes, /metrics): answered but not logged or counted. */
  quiet: string[];
}

/** Options for {@link instrument}. */
export interface InstrumentOptions {
  /** Add `X-Instance-Id` to every response (default false). */
  instanceHeader?: boolean;
  /** Path of the Prometheus endpoint (default `/metrics`; `false` to leave it out). */
  metricsPath?: string | false;
  /** Where requests are observed (default `'server'`); see {@link ObserveAt}. */
  observeAt?: ObserveAt;
}

/**
 * Mount the health probes, `/metrics` and the observe middleware (request id, request log line,
 * request metrics). Call it right after `new Hono()`, before defining routes: Hono runs
 * middleware only for routes registered after it. Probes and `/metrics` are mounted ahead of the
 * middleware so a balancer polling every second does not fill the request log.
 *
 * @example
 * const app = new Hono();
 * instrument(app, shoal, { instanceHeader: true });
 * app.get('/orders/:id', handler);
 */
export function instrument(app: Hono, runtime: ShoalRuntime, options: InstrumentOptions = {}): Hono {
  const marked = app as unknown as Record<symbol, Instrumented | undefined>;
  if (marked[INSTRUMENTED]) return app;
  const observeAt = options.observeAt ?? 'server';
  const before = app.routes.length;
  app.route('/', healthRoutes(runtime.health));
  const metricsPath = options.metricsPath ?? '/metrics';
  if (metricsPath !== false) app.get(metricsPath, metricsHandler(runtime.metrics));
  marked[INSTRUMENTED] = {
    observeAt,
    instanceHeader: options.instanceHeader ?? false,
    quiet: app.routes.slice(before).map((r) => r.path),
  };
  // serve() observes at the Node layer; a middleware too would log every request twice.
  if (observeAt === 'server') return app;
  app.use(
    '*',
    observe({
      logger: runtime.log,
      metrics: runtime.metrics,
      instanceId: runtime.instanceId,
      instanceHeader: options.instanceHeader ?? false,
    }),
  );
  return app;
}

/** Options for {@link serve}. */
export interface ServeOptions extends InstrumentOptions {
  /** Default `config.port` (`PORT`); 0 picks a free port. */
  port?: number;
  /** Default `config.host` (`HOST`). */
  host?: string;
  /** Install SIGTERM/SIGINT handlers (default true). */
  signals?: boolean;
  /**
   * Mark startup complete once listening (default true). Pass false when the service still has
   * work to do (warming caches) and call `runtime.health.markStarted()` itself.
   */
  markStarted?: boolean;
}

/** What {@link serve} returns. */
export interface Serving {
  server: Server;
  /** The bound port (useful with `port: 0`). */
  port: number;
}

/**
 * Start serving. Instruments the app if `instrument` was not called (with a warning when routes
 * already exist, because the middleware then misses them), sets `keepAliveTimeout` and
 * `headersTimeout` from config (defaults above common balancer idle timeouts), hands the server
 * to the shutdown controller, starts the health loop and listens for SIGTERM/SIGINT.
 *
 * @example
 * runMain(async () => {
 *   const shoal = createShoal({ version: '1.0.0' });
 *   const app = new Hono();
 *   instrument(app, shoal);
 *   app.get('/', (c) => c.text('hello'));
 *   const { port } = await serve(app, shoal);
 * });
 */
export async function serve(app: Hono, runtime: ShoalRuntime, options: ServeOptions = {}): Promise<Serving> {
  const marked = app as unknown as Record<symbol, Instrumented | undefined>;
  if (!marked[INSTRUMENTED]) {
    if (app.routes.length > 0 && options.observeAt !== 'server') {
      runtime.log.warn(
        {},
        'serve(): observe middleware mounted after existing routes and will not see them; call instrument(app, runtime) before defining routes',
      );
    }
    instrument(app, runtime, options);
  }
  const { config, shutdown, health, metrics, log } = runtime;
  let server: Server;
  const instrumented = marked[INSTRUMENTED];
  if (instrumented?.observeAt === 'server') {
    server = createObservedServer(app, {
      logger: runtime.log,
      metrics: runtime.metrics,
      instanceId: runtime.instanceId,
      instanceHeader: instrumented.instanceHeader,
      // Probes and /metrics stay out of the request log, as in middleware mode.
      unobservedRoutes: instrumented.quiet,
    });
  } else {
    server = createAdaptorServer({ fetch: app.fetch }) as Server;
  }
  server.keepAliveTimeout = config.shutdown.keepAliveTimeoutMs;
  server.headersTimeout = config.shutdown.headersTimeoutMs;
  if (server.requestTimeout > 0 && server.requestTimeout < server.headersTimeout) {
    server.requestTimeout = server.headersTimeout;
  }
  shutdown.trackServer(server);
  metrics.trackServer(server);
  const stopLoopMonitor = metrics.startEventLoopMonitor();
  shutdown.register('event-loop-monitor', stopLoopMonitor);

  const port = options.port ?? config.port;
  const host = options.host ?? config.host;
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(port, host, () => {
      server.off('error', reject);
      resolve();
    });
  });
  const bound = (server.address() as AddressInfo).port;
  health.start();
  if (options.markStarted ?? true) health.markStarted();
  if (options.signals ?? true) shutdown.listen();
  log.info({ port: bound, host }, 'listening');
  return { server, port: bound };
}
