// Tracing is off without an endpoint, degrades to a warning without the packages, and exports real
// OTLP/HTTP spans (named by route pattern, parented by traceparent) to a collector on loopback.
import assert from 'node:assert/strict';
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { after, test } from 'node:test';
import { Hono } from 'hono';
import { type ObserveEnv, observe } from '../../src/adapters/hono/observe.js';
import { createLogger } from '../../src/observe/log.js';
import { startTracing } from '../../src/observe/tracing.js';
import { captureSink, type Served, serveApp, until } from './helpers.js';

const toClose: Array<() => Promise<void>> = [];
after(async () => {
  for (const close of toClose.reverse()) await close();
});

test('no endpoint: tracing is off and nothing is loaded', async () => {
  const saved = process.env.OTEL_EXPORTER_OTLP_ENDPOINT;
  delete process.env.OTEL_EXPORTER_OTLP_ENDPOINT;
  try {
    let loaded = 0;
    const t = await startTracing({
      service: 's',
      instanceId: 'i',
      importFrom: async (s) => {
        loaded++;
        return import(s);
      },
    });
    assert.equal(t, undefined);
    assert.equal(loaded, 0);
  } finally {
    if (saved !== undefined) process.env.OTEL_EXPORTER_OTLP_ENDPOINT = saved;
  }
});

test('endpoint set but packages missing: one warning naming the packages, service keeps running', async () => {
  const warnings: string[] = [];
  const t = await startTracing({
    service: 's',
    instanceId: 'i',
    endpoint: 'http://127.0.0.1:1',
    warn: (m) => warnings.push(m),
    importFrom: (s) => import(`${s}-not-installed`),
  });
  assert.equal(t, undefined);
  assert.equal(warnings.length, 1);
  assert.match(warnings[0] ?? '', /@opentelemetry\/sdk-trace-node/);
});

test('with an endpoint, each request is a server span named by route and joined to the caller trace', async () => {
  const bodies: string[] = [];
  const collector: Server = createServer((req, res) => {
    let b = '';
    req.on('data', (d) => {
      b += d;
    });
    req.on('end', () => {
      bodies.push(`${req.url} ${b}`);
      res.setHeader('content-type', 'application/json');
      res.end('{}');
    });
  });
  await new Promise<void>((r) => collector.listen(0, '127.0.0.1', r));
  toClose.push(() => new Promise((r) => collector.close(() => r())));
  const port = (collector.address() as AddressInfo).port;

  const tracing = await startTracing({
    service: 'orders',
    instanceId: 'orders-2',
    endpoint: `http://127.0.0.1:${port}/`,
  });
  assert.ok(tracing, 'tracing starts when the packages are installed');
  let stopped = false;
  toClose.push(async () => {
    if (!stopped) await tracing.stop();
  });
  const sink = captureSink();
  const logger = createLogger({ service: 'orders', instanceId: 'orders-2', destination: sink.stream });
  const app = new Hono<ObserveEnv>();
  app.use(observe({ logger, instanceId: 'orders-2', tracing }));
  app.get('/api/orders/:id', (c) => c.text('ok'));
  const served: Served = await serveApp(app);
  toClose.push(() => served.close());

  const traceId = '0af7651916cd43dd8448eb211c80319c';
  const res = await fetch(`${served.url}/api/orders/9`, {
    headers: { traceparent: `00-${traceId}-b7ad6b7169203331-01`, 'x-request-id': 'traced-1' },
  });
  assert.equal(await res.text(), 'ok');
  await until(() => sink.lines().some((l) => l.request_id === 'traced-1'));
  const line = sink.lines().find((l) => l.request_id === 'traced-1');
  assert.equal(line?.trace_id, traceId, 'the request line carries the trace id');

  await tracing.stop();
  stopped = true;
  const exported = bodies.join('\n');
  assert.match(exported, /^\/v1\/traces /);
  const payload = JSON.parse(bodies[0]?.slice('/v1/traces '.length) ?? '{}');
  const span = payload.resourceSpans[0].scopeSpans[0].spans[0];
  assert.equal(span.name, 'GET /api/orders/:id');
  assert.equal(span.traceId, traceId);
  assert.equal(span.parentSpanId, 'b7ad6b7169203331');
  assert.equal(span.kind, 2, 'SERVER');
  assert.match(exported, /"service.instance.id","value":\{"stringValue":"orders-2"/);
});
