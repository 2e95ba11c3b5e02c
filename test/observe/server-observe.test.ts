// Server-level observing (serve() with observeAt: 'server'): same request line, headers and metrics
// as the middleware, without a '*' middleware in the app; handlers use requestIdOf/logOf.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { Hono } from 'hono';
import { logOf, requestIdOf } from '../../src/adapters/hono/observe.js';
import { instrument, serve } from '../../src/adapters/hono/serve.js';
import { createLogger } from '../../src/observe/log.js';
import { createShoal } from '../../src/runtime.js';
import { captureSink, until } from './helpers.js';

test("observeAt: 'server' logs one line per request with the matched route, sets headers, hides probes", async () => {
  const sink = captureSink();
  const logger = createLogger({ service: 'srv-test', instanceId: 'inst-9', destination: sink.stream });
  const shoal = createShoal({
    env: { HOST: '127.0.0.1', PORT: '0', SHOAL_DRAIN_DELAY: '0', SHOAL_INSTANCE_ID: 'inst-9' },
    logger,
    exit: () => {},
  });
  const app = new Hono();
  instrument(app, shoal, { instanceHeader: true, observeAt: 'server' });
  app.use('/api/*', async (_c, next) => {
    await next();
  });
  app.get('/api/orders/:id', (c) => {
    logOf(c)?.info({ password: 'hunter2', order: c.req.param('id') }, 'loading order');
    return c.json({ id: c.req.param('id'), requestId: requestIdOf(c) });
  });
  app.get('/boom', () => {
    throw new Error('kaput');
  });
  assert.equal(
    app.routes.some((r) => r.path === '*' || r.path === '/*'),
    false,
    'no catch-all middleware mounted in server mode',
  );
  const { port } = await serve(app, shoal, { signals: false, observeAt: 'server' });
  const base = `http://127.0.0.1:${port}`;
  try {
    const res = await fetch(`${base}/api/orders/42?x=1`, { headers: { 'X-Request-Id': 'req-abc.1' } });
    assert.equal(res.status, 200);
    assert.equal(res.headers.get('x-request-id'), 'req-abc.1');
    assert.equal(res.headers.get('x-instance-id'), 'inst-9');
    assert.deepEqual(await res.json(), { id: '42', requestId: 'req-abc.1' });

    const bad = await fetch(`${base}/nope`, { headers: { 'X-Request-Id': 'evil"\tid' } });
    assert.equal(bad.status, 404);
    const minted = bad.headers.get('x-request-id') ?? '';
    assert.match(minted, /^[0-9a-f-]{36}$/, 'malformed id replaced by a UUID');
    await bad.text();
    assert.equal((await fetch(`${base}/boom`)).status, 500);
    assert.equal((await fetch(`${base}/health/live`)).status, 200);
    const metrics = await (await fetch(`${base}/metrics`)).text();

    await until(() => sink.lines().filter((l) => l.msg === 'request').length >= 3);
    const requests = sink.lines().filter((l) => l.msg === 'request');
    assert.deepEqual(
      requests.map((l) => [l.instance_id, l.request_id === undefined, l.method, l.route, l.status, l.level]),
      [
        ['inst-9', false, 'GET', '/api/orders/:id', 200, 'info'],
        ['inst-9', false, 'GET', 'unmatched', 404, 'info'],
        ['inst-9', false, 'GET', '/boom', 500, 'error'],
      ],
      'one line per request; probes and /metrics are not logged',
    );
    assert.equal(requests[0]?.request_id, 'req-abc.1');
    assert.equal(requests[1]?.request_id, minted);
    assert.equal(typeof requests[0]?.latency_ms, 'number');
    const handlerLine = sink.lines().find((l) => l.msg === 'loading order');
    assert.equal(handlerLine?.request_id, 'req-abc.1', 'logOf(c) carries the request id');
    assert.equal(handlerLine?.password, '[Redacted]');
    assert.ok(!sink.text().includes('hunter2'), 'redaction holds');
    assert.match(metrics, /shoal_http_requests_total\{route="\/api\/orders\/:id",method="GET",status="200"/);
    assert.match(metrics, /route="unmatched",method="GET",status="404"/);
    assert.doesNotMatch(metrics, /route="\/health\/live"/);
  } finally {
    await shoal.shutdown.shutdown('test');
  }
});

test('requestIdOf/logOf also work with the observe middleware (default mode)', async () => {
  const sink = captureSink();
  const logger = createLogger({ service: 'srv-test', instanceId: 'inst-3', destination: sink.stream });
  const shoal = createShoal({
    env: { HOST: '127.0.0.1', PORT: '0', SHOAL_DRAIN_DELAY: '0', SHOAL_INSTANCE_ID: 'inst-3' },
    logger,
    exit: () => {},
  });
  const app = new Hono();
  instrument(app, shoal);
  app.get('/who', (c) => {
    logOf(c)?.info('who');
    return c.json({ a: requestIdOf(c), b: c.get('requestId' as never) });
  });
  const { port } = await serve(app, shoal, { signals: false });
  try {
    const res = await fetch(`http://127.0.0.1:${port}/who`, { headers: { 'X-Request-Id': 'mw-1' } });
    assert.deepEqual(await res.json(), { a: 'mw-1', b: 'mw-1' });
    await until(() => sink.lines().some((l) => l.msg === 'request'));
    assert.equal(sink.lines().find((l) => l.msg === 'who')?.request_id, 'mw-1');
  } finally {
    await shoal.shutdown.shutdown('test');
  }
});
