// Server-level observing (serve()'s default, observeAt: 'server'): same request line, headers and
// metrics as the middleware, without a '*' middleware in the app; handlers use requestIdOf/logOf.
import assert from 'node:assert/strict';
import { once } from 'node:events';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import type { IncomingMessage, ServerResponse } from 'node:http';
import { type AddressInfo, connect } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test } from 'node:test';
import { getRequestListener } from '@hono/node-server';
import { Hono } from 'hono';
import { createObservedServer, logOf, requestIdOf } from '../../src/adapters/hono/observe.js';
import { instrument, serve } from '../../src/adapters/hono/serve.js';
import { createLogDestination, createLogger } from '../../src/observe/log.js';
import { createMetrics } from '../../src/observe/metrics.js';
import { createShoal } from '../../src/runtime.js';
import { signal } from '../helpers/signal.js';
import { captureSink, until } from './helpers.js';

/** A runtime on an ephemeral port whose log lines land in a sink. */
function logged(instanceId: string) {
  const sink = captureSink();
  const logger = createLogger({ service: 'srv-test', instanceId, destination: sink.stream });
  const shoal = createShoal({
    env: { HOST: '127.0.0.1', PORT: '0', SHOAL_DRAIN_DELAY: '0', SHOAL_INSTANCE_ID: instanceId },
    logger,
    exit: () => {},
  });
  return { sink, shoal };
}

test("observeAt: 'server' logs one line per request with the matched route, sets headers, hides probes", async () => {
  const { sink, shoal } = logged('inst-9');
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

test("requestIdOf/logOf also work with the observe middleware (observeAt: 'middleware')", async () => {
  const { sink, shoal } = logged('inst-3');
  const app = new Hono();
  instrument(app, shoal, { observeAt: 'middleware' });
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

test("createObservedServer: ids on every way a response can start, the app's own id kept, UUIDv7 when minted", async () => {
  const sink = captureSink();
  const logger = createLogger({ service: 'srv-test', instanceId: 'inst-5', destination: sink.stream });
  const metrics = createMetrics({ service: 'srv-test', instanceId: 'inst-5', processMetrics: false });
  const app = new Hono();
  app.get('/plain', (c) => c.text('plain'));
  app.get('/own', (c) => c.text('own', 200, { 'X-Request-Id': 'app-chosen' }));
  app.get('/stream', (c) =>
    c.body(
      new ReadableStream({
        start(ctl) {
          ctl.enqueue(new TextEncoder().encode('chunk'));
          ctl.close();
        },
      }),
    ),
  );
  // A raw Node listener exercising writeHead(status, reason, [pairs]) and implicit headers.
  const raw = (req: IncomingMessage, res: ServerResponse) => {
    if (req.url === '/pairs') {
      res.writeHead(201, 'Made', [['Content-Type', 'text/plain']]);
      res.end('pairs');
    } else if (req.url === '/flat') {
      res.writeHead(202, ['Content-Type', 'text/plain']);
      res.end('flat');
    } else if (req.url === '/implicit') {
      res.setHeader('Content-Type', 'text/plain');
      res.end('implicit');
    } else {
      return getRequestListener(app.fetch)(req, res);
    }
  };
  const server = createObservedServer(app, {
    logger,
    metrics,
    instanceId: 'inst-5',
    instanceHeader: true,
    listener: raw,
  });
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  const base = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
  try {
    for (const [path, status] of [
      ['/plain', 200],
      ['/stream', 200],
      ['/pairs', 201],
      ['/flat', 202],
      ['/implicit', 200],
    ] as const) {
      const res = await fetch(`${base}${path}`, { headers: { 'X-Request-Id': `id-${path.slice(1)}` } });
      assert.equal(res.status, status, path);
      assert.equal(res.headers.get('x-request-id'), `id-${path.slice(1)}`, `${path} echoes the id`);
      assert.equal(res.headers.get('x-instance-id'), 'inst-5', `${path} names the instance`);
      await res.text();
    }
    const own = await fetch(`${base}/own`, { headers: { 'X-Request-Id': 'caller' } });
    assert.equal(
      own.headers.get('x-request-id'),
      'app-chosen',
      "a response's own X-Request-Id wins, sent once",
    );
    await own.text();
    const minted = await fetch(`${base}/plain`);
    const id = minted.headers.get('x-request-id') ?? '';
    assert.match(
      id,
      /^[0-9a-f]{8}-[0-9a-f]{4}-7[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$/,
      'minted ids are UUIDv7',
    );
    const ms = Number.parseInt(id.slice(0, 8) + id.slice(9, 13), 16);
    assert.ok(Math.abs(ms - Date.now()) < 60_000, 'UUIDv7 carries the current time');
    await minted.text();
    await until(() => sink.lines().filter((l) => l.msg === 'request').length >= 7);
    const lines = sink.lines().filter((l) => l.msg === 'request');
    assert.deepEqual(
      lines.map((l) => [l.request_id, l.status]),
      [
        ['id-plain', 200],
        ['id-stream', 200],
        ['id-pairs', 201],
        ['id-flat', 202],
        ['id-implicit', 200],
        ['caller', 200],
        [id, 200],
      ],
    );
  } finally {
    server.close();
  }
});

test('createObservedServer: a client that leaves early is logged once as 499 and leaves the in-flight gauge at 0', async () => {
  const sink = captureSink();
  const logger = createLogger({ service: 'srv-test', instanceId: 'inst-6', destination: sink.stream });
  const metrics = createMetrics({ service: 'srv-test', instanceId: 'inst-6', processMetrics: false });
  const app = new Hono();
  const held = signal();
  app.get('/slow', async (c) => {
    await held.done;
    return c.text('late');
  });
  const server = createObservedServer(app, { logger, metrics, instanceId: 'inst-6' });
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  const port = (server.address() as AddressInfo).port;
  try {
    const socket = connect(port, '127.0.0.1');
    await once(socket, 'connect');
    socket.write('GET /slow HTTP/1.1\r\nHost: x\r\nX-Request-Id: gone-1\r\n\r\n');
    const inFlight = async () =>
      /shoal_http_requests_in_flight\{[^}]*\} (\d+)/.exec(await metrics.render())?.[1];
    for (let i = 0; i < 300 && (await inFlight()) !== '1'; i++) await new Promise((r) => setTimeout(r, 10));
    assert.equal(await inFlight(), '1', 'the request is in flight');
    socket.destroy();
    await until(() => sink.lines().some((l) => l.msg === 'request'));
    held.fire();
    await new Promise((r) => setTimeout(r, 100));
    const lines = sink.lines().filter((l) => l.msg === 'request');
    assert.equal(lines.length, 1, 'one line, even though the handler finished afterwards');
    assert.equal(lines[0]?.request_id, 'gone-1');
    assert.equal(lines[0]?.status, 499);
    assert.equal(lines[0]?.route, '/slow');
    assert.equal(await inFlight(), '0', 'the gauge is back to 0');
  } finally {
    held.fire();
    server.close();
  }
});

test('createObservedServer with a threaded log destination: same lines, in order, and bindings still screened', async () => {
  const dir = mkdtempSync(join(tmpdir(), 'shoal-srv-thread-'));
  const file = join(dir, 'log.ndjson');
  const dest = createLogDestination({ path: file, thread: true, flushIntervalMs: 60_000 });
  const root = createLogger({ service: 'srv-test', instanceId: 'inst-t', destination: dest });
  const app = new Hono();
  app.get('/api/items/:id', (c) => {
    logOf(c)?.info({ item: c.req.param('id') }, 'handling');
    return c.text('ok');
  });
  app.get('/boom', (c) => c.text('no', 503));
  const run = async (logger: typeof root, requests: string[]) => {
    const server = createObservedServer(app, {
      logger,
      metrics: createMetrics({ service: 's', instanceId: 'i' }),
      instanceId: 'inst-t',
    });
    server.listen(0, '127.0.0.1');
    await once(server, 'listening');
    const { port } = server.address() as AddressInfo;
    for (const path of requests) {
      const res = await fetch(`http://127.0.0.1:${port}${path}`, {
        headers: { 'X-Request-Id': `id-${path.length}` },
      });
      await res.text();
    }
    server.close();
    await once(server, 'close');
  };
  try {
    await run(root, ['/api/items/1', '/boom', '/api/items/22']);
    // A logger whose own bindings hold a secret: its request lines go through redaction instead.
    await run(root.child({ apiToken: 'sekrit-123' }), ['/api/items/333']);
    root.flush();
    const text = readFileSync(file, 'utf8');
    const lines = text
      .split('\n')
      .filter(Boolean)
      .map((l) => JSON.parse(l) as Record<string, unknown>);
    assert.deepEqual(
      lines.map((l) => [l.msg, l.route, l.status, l.level, l.request_id]),
      [
        ['handling', undefined, undefined, 'info', 'id-12'],
        ['request', '/api/items/:id', 200, 'info', 'id-12'],
        ['request', '/boom', 503, 'error', 'id-5'],
        ['handling', undefined, undefined, 'info', 'id-13'],
        ['request', '/api/items/:id', 200, 'info', 'id-13'],
        ['handling', undefined, undefined, 'info', 'id-14'],
        ['request', '/api/items/:id', 200, 'info', 'id-14'],
      ],
    );
    for (const l of lines) assert.equal(l.instance_id, 'inst-t');
    assert.equal(typeof lines[1]?.latency_ms, 'number');
    assert.equal(lines[6]?.apiToken, '[Redacted]');
    assert.ok(!text.includes('sekrit-123'), 'a secret in the bindings never reaches the file');
  } finally {
    dest.end();
    rmSync(dir, { recursive: true, force: true });
  }
});

test('createObservedServer: the incoming id is read in any case, past headers of the same length; a repeated one counts as none', async () => {
  const sink = captureSink();
  const logger = createLogger({ service: 'srv-test', instanceId: 'inst-8', destination: sink.stream });
  const app = new Hono();
  app.get('/plain', (c) =>
    c.text('plain', 200, { 'Content-Type': 'text/plain', 'x-INSTANCE-id': 'app-own' }),
  );
  const server = createObservedServer(app, { logger, instanceId: 'inst-8', instanceHeader: true });
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  const port = (server.address() as AddressInfo).port;
  // Raw requests: fetch would fold repeated headers into one value.
  const send = async (headers: string) => {
    const socket = connect(port, '127.0.0.1');
    await once(socket, 'connect');
    socket.write(`GET /plain HTTP/1.1\r\nHost: x\r\nConnection: close\r\n${headers}\r\n`);
    let text = '';
    for await (const chunk of socket) text += String(chunk);
    return text.toLowerCase();
  };
  // Every value of one header in a lower-cased response head, in order.
  const valuesOf = (text: string, name: string) =>
    text
      .split('\r\n')
      .filter((l) => l.startsWith(`${name}: `))
      .map((l) => l.slice(name.length + 2));
  try {
    const mixed = await send('Content-Type: text/plain\r\nx-REQUEST-id: raw-7\r\n');
    assert.deepEqual(
      valuesOf(mixed, 'x-request-id'),
      ['raw-7'],
      'found past Content-Type, whatever its case',
    );
    assert.deepEqual(
      valuesOf(mixed, 'x-instance-id'),
      ['app-own'],
      "the app's own X-Instance-Id, in its own case, is kept and sent once",
    );
    const twice = await send('X-Request-Id: a-1\r\nX-Request-Id: b-2\r\n');
    const minted = valuesOf(twice, 'x-request-id');
    assert.equal(minted.length, 1);
    assert.match(
      minted[0] ?? '',
      /^[0-9a-f]{8}-[0-9a-f]{4}-7[0-9a-f]{3}-/,
      'a repeated id is replaced by a minted one',
    );
    await until(() => sink.lines().filter((l) => l.msg === 'request').length >= 2);
    assert.deepEqual(
      sink
        .lines()
        .filter((l) => l.msg === 'request')
        .map((l) => l.request_id),
      ['raw-7', minted[0]],
    );
  } finally {
    server.close();
  }
});
