// The Hono observe middleware over real sockets: request lines, request ids, redaction.
import assert from 'node:assert/strict';
import { connect } from 'node:net';
import { after, before, test } from 'node:test';
import { Hono } from 'hono';
import { type ObserveEnv, observe } from '../../src/adapters/hono/observe.js';
import { createLogger } from '../../src/observe/log.js';
import { captureSink, type Served, serveApp, until } from './helpers.js';

const sink = captureSink();
const logger = createLogger({ service: 'svc-test', instanceId: 'inst-7', destination: sink.stream });
let served: Served;

function requestLines(): Record<string, unknown>[] {
  return sink.lines().filter((l) => l.msg === 'request');
}

/** Request lines for one request id (waits for the line: it is written after the response). */
async function linesFor(requestId: string, n = 1): Promise<Record<string, unknown>[]> {
  await until(() => requestLines().filter((l) => l.request_id === requestId).length >= n);
  return requestLines().filter((l) => l.request_id === requestId);
}

before(async () => {
  const app = new Hono<ObserveEnv>();
  app.use(observe({ logger, instanceId: 'inst-7', instanceHeader: true }));
  app.get('/api/orders/:id', (c) => c.json({ id: c.req.param('id'), requestId: c.var.requestId }));
  app.post('/api/cards', async (c) => {
    const body = await c.req.json();
    // What a careless app does: log the whole body and the whole header set.
    c.var.log.info({ body, headers: Object.fromEntries(c.req.raw.headers) }, 'card received');
    c.var.log.info({ req: { raw: [...c.req.raw.headers].flat() } }, 'raw headers');
    return c.json({ ok: true }, 201);
  });
  app.get('/boom', () => {
    throw new Error('kaput');
  });
  app.get('/raw', () => new Response('raw body', { headers: { 'x-from': 'raw' } }));
  const sub = new Hono<ObserveEnv>();
  sub.get('/items/:itemId', (c) => c.text(`item ${c.req.param('itemId')}`));
  app.route('/v2', sub);
  served = await serveApp(app);
});

after(async () => {
  await served.close();
});

test('every request line carries instance_id, request_id, method, route pattern, status, latency_ms', async () => {
  const res = await fetch(`${served.url}/api/orders/42`);
  assert.equal(res.status, 200);
  const id = res.headers.get('x-request-id');
  assert.ok(id && id.length > 0, 'a request id is generated and echoed');
  const body = (await res.json()) as { requestId: string };
  assert.equal(body.requestId, id, 'c.var.requestId is the echoed id');
  const [line, ...more] = await linesFor(id);
  assert.equal(more.length, 0, 'exactly one request line');
  assert.ok(line);
  assert.equal(line.instance_id, 'inst-7');
  assert.equal(line.service, 'svc-test');
  assert.equal(line.request_id, id);
  assert.equal(line.method, 'GET');
  assert.equal(line.route, '/api/orders/:id');
  assert.equal(line.status, 200);
  assert.equal(typeof line.latency_ms, 'number');
  assert.ok((line.latency_ms as number) >= 0 && (line.latency_ms as number) < 10_000);
  assert.equal(line.level, 'info');
  assert.equal(res.headers.get('x-instance-id'), 'inst-7');
});

test('routes of mounted sub-apps, unmatched paths and failing handlers are labelled by pattern', async () => {
  const r1 = await fetch(`${served.url}/v2/items/abc`, { headers: { 'x-request-id': 'sub-app-1' } });
  assert.equal(await r1.text(), 'item abc');
  assert.equal((await linesFor('sub-app-1'))[0]?.route, '/v2/items/:itemId');

  const r2 = await fetch(`${served.url}/no/such/path/123`, { headers: { 'x-request-id': 'unmatched-1' } });
  assert.equal(r2.status, 404);
  assert.equal(r2.headers.get('x-request-id'), 'unmatched-1');
  const l2 = (await linesFor('unmatched-1'))[0];
  assert.equal(l2?.route, 'unmatched');
  assert.equal(l2?.status, 404);

  const r3 = await fetch(`${served.url}/boom`, { headers: { 'x-request-id': 'boom-1' } });
  assert.equal(r3.status, 500);
  assert.equal(r3.headers.get('x-request-id'), 'boom-1');
  const l3 = (await linesFor('boom-1'))[0];
  assert.equal(l3?.route, '/boom');
  assert.equal(l3?.status, 500);
  assert.equal(l3?.level, 'error');

  const r4 = await fetch(`${served.url}/raw`, { headers: { 'x-request-id': 'raw-1' } });
  assert.equal(await r4.text(), 'raw body');
  assert.equal(r4.headers.get('x-request-id'), 'raw-1', 'echoed on a Response built by hand too');
  assert.equal(r4.headers.get('x-from'), 'raw');
});

test('a well-formed X-Request-Id is echoed and logged', async () => {
  for (const id of ['abc-123', 'f47ac10b-58cc-4372-a567-0e02b2c3d479', 'lb:1.2_3', 'x'.repeat(128)]) {
    const res = await fetch(`${served.url}/api/orders/1`, { headers: { 'x-request-id': id } });
    assert.equal(res.status, 200);
    assert.equal(res.headers.get('x-request-id'), id);
    assert.equal((await linesFor(id)).length, 1);
  }
});

test('a malformed X-Request-Id (too long, spaces, odd characters) is replaced, never echoed', async () => {
  for (const bad of ['x'.repeat(129), 'has spaces in it', 'quote"and<tag>', 'semi;colon', '']) {
    const res = await fetch(`${served.url}/api/orders/2`, { headers: { 'x-request-id': bad } });
    await res.arrayBuffer();
    const echoed = res.headers.get('x-request-id');
    assert.ok(echoed, 'a fresh id is echoed');
    assert.notEqual(echoed, bad);
    assert.match(echoed, /^[0-9a-f-]{36}$/);
    const lines = await linesFor(echoed);
    assert.equal(lines.length, 1);
  }
  assert.ok(!sink.text().includes('has spaces in it'), 'the rejected id is not logged');
});

test('a request id carrying CR/LF over a raw socket is never echoed or logged', async () => {
  const marker = `inj${Date.now()}`;
  const raw = await new Promise<string>((resolve, reject) => {
    const sock = connect(served.port, '127.0.0.1');
    let data = '';
    sock.on('data', (d) => {
      data += d.toString('latin1');
    });
    sock.on('end', () => resolve(data));
    sock.on('close', () => resolve(data));
    sock.on('error', reject);
    // A lone CR inside the value: either the parser rejects the request or the id is replaced.
    sock.write(
      `GET /api/orders/3 HTTP/1.1\r\nHost: x\r\nX-Request-Id: ok\r${marker}: 1\r\nConnection: close\r\n\r\n`,
    );
  });
  assert.match(raw, /^HTTP\/1\.1 (200|400)/);
  assert.ok(!raw.toLowerCase().includes(marker.toLowerCase()), 'the injected text is not reflected');
  await new Promise((r) => setTimeout(r, 50));
  assert.ok(!sink.text().includes(marker), 'the injected text is not logged');
});

test('secrets in Authorization/Cookie headers and in JSON body fields never reach the log output', async () => {
  const bearer = `bearer-secret-${Math.random().toString(36).slice(2)}`;
  const cookie = `cookie-secret-${Math.random().toString(36).slice(2)}`;
  const apiToken = `api-token-secret-${Math.random().toString(36).slice(2)}`;
  const password = `password-secret-${Math.random().toString(36).slice(2)}`;
  const deep = `deep-secret-${Math.random().toString(36).slice(2)}`;
  const res = await fetch(`${served.url}/api/cards`, {
    method: 'POST',
    headers: {
      'content-type': 'application/json',
      authorization: `Bearer ${bearer}`,
      cookie: `session=${cookie}; theme=dark`,
      'x-request-id': 'secrets-1',
    },
    body: JSON.stringify({
      card: { apiToken, last4: '4242' },
      user: { name: 'ada', Password: password },
      items: [{ nested: { clientSecret: deep } }],
    }),
  });
  assert.equal(res.status, 201);
  await until(() => requestLines().some((l) => l.request_id === 'secrets-1'));
  const out = sink.text();
  for (const secret of [bearer, cookie, apiToken, password, deep]) {
    assert.ok(!out.includes(secret), `secret ${secret.split('-')[0]} leaked into the log`);
  }
  // The app's lines were written, with the harmless fields intact and the secrets censored.
  const card = sink.lines().find((l) => l.msg === 'card received' && l.request_id === 'secrets-1');
  assert.ok(card, 'the app log line exists and carries request_id');
  const body = card.body as { card: Record<string, unknown>; user: Record<string, unknown> };
  assert.equal(body.card.last4, '4242');
  assert.equal(body.card.apiToken, '[Redacted]');
  assert.equal(body.user.name, 'ada');
  assert.equal(body.user.Password, '[Redacted]');
  const headers = card.headers as Record<string, unknown>;
  assert.equal(headers.authorization, '[Redacted]');
  assert.equal(headers.cookie, '[Redacted]');
  assert.equal(headers['content-type'], 'application/json');
  assert.equal(card.instance_id, 'inst-7');
});
