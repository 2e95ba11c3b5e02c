// Draft semantics through the Hono middleware with the Redis store: several app objects (instances)
// in one process sharing the real Redis.
import assert from 'node:assert/strict';
import { randomUUID } from 'node:crypto';
import { after, before, describe, test } from 'node:test';
import { Hono } from 'hono';
import { Registry } from 'prom-client';
import { type IdempotencyVariables, idempotency } from '../../src/adapters/hono/idempotency.js';
import { createIdempotency, type IdempotencyOptions } from '../../src/idempotency/engine.js';
import { requestFingerprint } from '../../src/idempotency/fingerprint.js';
import { redisIdempotencyStore } from '../../src/idempotency/redis-store.js';
import { createRedis, type RedisClient, waitForRedis } from '../../src/stores/redis/client.js';
import { dropPrefix, REDIS_URL, testPrefix, testRedis } from '../helpers/stores.js';

const prefix = testPrefix('idem');
const clients: RedisClient[] = [];
const admin = testRedis();

interface Instance {
  app: Hono<{ Variables: IdempotencyVariables }>;
  runs: { count: number };
  registry: Registry;
}

/** Build one "instance": its own Redis connection, engine, registry and app. */
async function instance(options: Partial<IdempotencyOptions> = {}): Promise<Instance> {
  const redis = createRedis(REDIS_URL);
  clients.push(redis);
  await waitForRedis(redis);
  const registry = new Registry();
  const engine = createIdempotency({ store: redisIdempotencyStore({ redis, prefix }), registry, ...options });
  const app = new Hono<{ Variables: IdempotencyVariables }>();
  const runs = { count: 0 };
  const gates = new Map<string, Promise<void>>();
  app.use('/orders', idempotency(engine, { identity: (c) => c.req.header('x-user') }));
  app.post('/orders', async (c) => {
    runs.count++;
    const body = await c.req.json<Record<string, unknown>>();
    const gate = c.req.header('x-gate');
    if (gate) await gates.get(gate);
    const status = Number(c.req.header('x-status') ?? 201);
    c.header('location', '/orders/7');
    c.header('etag', '"v1"');
    c.header('set-cookie', 'sid=secret');
    c.header('x-private', 'not replayed');
    c.header('x-trace', 'replayed when configured');
    const size = Number(c.req.header('x-size') ?? 0);
    if (size > 0) return c.body('x'.repeat(size), 200, { 'content-type': 'text/plain' });
    return c.json({ order: 7, echo: body, run: runs.count }, status as 201);
  });
  app.get('/orders', (c) => c.text('listing'));
  (app as unknown as { gates: typeof gates }).gates = gates;
  return { app, runs, registry };
}

const send = (inst: Instance, body: string, headers: Record<string, string> = {}) =>
  inst.app.request('/orders', {
    method: 'POST',
    headers: { 'content-type': 'application/json', ...headers },
    body,
  });
const k = (key = randomUUID()) => ({ 'idempotency-key': `"${key}"` });

async function metric(registry: Registry, name: string): Promise<number> {
  const m = await registry.getSingleMetric(name)?.get();
  return (m?.values ?? []).reduce((sum, v) => sum + v.value, 0);
}

after(async () => {
  await dropPrefix(admin, prefix);
  await admin.quit();
  for (const c of clients) c.disconnect();
});

describe('idempotency semantics (Redis store, several instances in one process)', () => {
  let one: Instance;
  let two: Instance;
  before(async () => {
    one = await instance({ replayHeaders: ['X-Trace'] });
    two = await instance({ replayHeaders: ['X-Trace'] });
  });

  test('same JSON with keys reordered -> byte-identical replay from another instance, with Idempotency-Replayed', async () => {
    const key = k();
    const first = await send(one, '{"sku":"apple","qty":3,"note":{"a":1,"b":2}}', key);
    assert.equal(first.status, 201);
    const firstBody = Buffer.from(await first.arrayBuffer());
    const replay = await send(two, '{ "note": {"b": 2, "a": 1}, "qty": 3,\n "sku": "apple" }', key);
    assert.equal(replay.status, 201);
    assert.deepEqual(Buffer.from(await replay.arrayBuffer()), firstBody);
    for (const h of ['content-type', 'location', 'etag', 'x-trace']) {
      assert.equal(replay.headers.get(h), first.headers.get(h), h);
    }
    assert.equal(replay.headers.get('idempotency-replayed'), 'true');
    assert.equal(first.headers.get('idempotency-replayed'), null);
    assert.equal(replay.headers.get('set-cookie'), null, 'set-cookie is never replayed');
    assert.equal(replay.headers.get('x-private'), null, 'headers outside the allow-list are not replayed');
    assert.equal(one.runs.count + two.runs.count, 1);
    assert.equal(await metric(two.registry, 'shoal_idempotency_replays_total'), 1);
  });

  test('one field changed -> 422 problem+json; no key -> 400; 256-character key -> 400; 255 is fine', async () => {
    const key = k();
    assert.equal((await send(one, '{"sku":"pear","qty":1}', key)).status, 201);
    const changed = await send(two, '{"sku":"pear","qty":2}', key);
    assert.equal(changed.status, 422);
    assert.equal(changed.headers.get('content-type'), 'application/problem+json');
    const p = (await changed.json()) as { type: string; status: number; code: string };
    assert.equal(p.type, 'urn:shoal:problem:idempotency-key-reused');
    assert.equal(p.code, 'idempotency.payload_mismatch');

    const missing = await send(one, '{"sku":"pear"}');
    assert.equal(missing.status, 400);
    assert.equal(
      ((await missing.json()) as { type: string }).type,
      'urn:shoal:problem:idempotency-key-missing',
    );
    const long = await send(one, '{"sku":"pear"}', { 'idempotency-key': `"${'x'.repeat(256)}"` });
    assert.equal(long.status, 400);
    assert.equal(
      ((await long.json()) as { type: string }).type,
      'urn:shoal:problem:idempotency-key-malformed',
    );
    const bare = await send(one, '{"sku":"pear"}', { 'idempotency-key': 'not-quoted' });
    assert.equal(bare.status, 400);
    const ok = await send(one, '{"sku":"pear"}', {
      'idempotency-key': `"${randomUUID()}${'x'.repeat(219)}"`,
    });
    assert.equal(ok.status, 201);
    assert.equal((await one.app.request('/orders')).status, 200, 'GET is not subject to the middleware');
    assert.equal(await metric(two.registry, 'shoal_idempotency_mismatches_total'), 1);
    assert.equal(await metric(one.registry, 'shoal_idempotency_rejected_total'), 3);
  });

  test('while in flight: same payload -> 409 with Retry-After; different payload -> 422 (fingerprint first)', async () => {
    const gates = (one.app as unknown as { gates: Map<string, Promise<void>> }).gates;
    let open!: () => void;
    gates.set('g1', new Promise<void>((r) => (open = r)));
    const key = k();
    const slow = send(one, '{"sku":"fig"}', { ...key, 'x-gate': 'g1' });
    await new Promise((r) => setTimeout(r, 100));
    const busy = await send(two, '{"sku":"fig"}', key);
    assert.equal(busy.status, 409);
    assert.ok(Number(busy.headers.get('retry-after')) >= 1);
    assert.equal(((await busy.json()) as { type: string }).type, 'urn:shoal:problem:idempotency-in-flight');
    const other = await send(two, '{"sku":"kiwi"}', key);
    assert.equal(other.status, 422);
    open();
    assert.equal((await slow).status, 201);
    assert.equal(await metric(two.registry, 'shoal_idempotency_conflicts_total'), 1);
  });

  test('keys are scoped per client: two users with the same key never collide', async () => {
    const key = k();
    const a = await send(one, '{"sku":"a"}', { ...key, 'x-user': 'alice' });
    const b = await send(one, '{"sku":"b"}', { ...key, 'x-user': 'bob' });
    assert.equal(a.status, 201);
    assert.equal(b.status, 201);
    assert.equal(b.headers.get('idempotency-replayed'), null);
  });

  test('statuses: 5xx, 409 and 429 are not stored (the retry runs); 4xx like 400 is stored', async () => {
    for (const status of [500, 503, 409, 429]) {
      const key = k();
      const before = one.runs.count;
      assert.equal((await send(one, '{"s":1}', { ...key, 'x-status': String(status) })).status, status);
      const retry = await send(one, '{"s":1}', key);
      assert.equal(retry.status, 201, `after ${status}`);
      assert.equal(one.runs.count, before + 2);
    }
    const key = k();
    assert.equal((await send(one, '{"s":2}', { ...key, 'x-status': '400' })).status, 400);
    const again = await send(two, '{"s":2}', key);
    assert.equal(again.status, 400);
    assert.equal(again.headers.get('idempotency-replayed'), 'true');
  });

  test('a response over the bound is delivered whole but not stored; retries get 409 result-unavailable', async () => {
    const small = await instance({ maxResponseBytes: 1024 });
    const key = k();
    const big = await send(small, '{"big":true}', { ...key, 'x-size': '5000' });
    assert.equal(big.status, 200);
    assert.equal((await big.text()).length, 5000);
    const retry = await send(small, '{"big":true}', key);
    assert.equal(retry.status, 409);
    assert.equal(
      ((await retry.json()) as { type: string }).type,
      'urn:shoal:problem:idempotency-result-unavailable',
    );
    assert.equal(small.runs.count, 1);
    const fits = await send(small, '{"big":false}', { ...k(), 'x-size': '1000' });
    assert.equal((await fits.text()).length, 1000);
    assert.equal(await metric(small.registry, 'shoal_idempotency_not_stored_total'), 1);
  });

  test('wait mode: a second request waits for the first one and replays its result', async () => {
    const waiting = await instance({ whileInFlight: { waitMs: 5000, pollMs: 20 } });
    const gates = (one.app as unknown as { gates: Map<string, Promise<void>> }).gates;
    let open!: () => void;
    gates.set('g2', new Promise<void>((r) => (open = r)));
    const key = k();
    const first = send(one, '{"sku":"lime"}', { ...key, 'x-gate': 'g2' });
    await new Promise((r) => setTimeout(r, 100));
    const second = send(waiting, '{"sku":"lime"}', key);
    await new Promise((r) => setTimeout(r, 200));
    open();
    const [r1, r2] = await Promise.all([first, second]);
    assert.equal(r1.status, 201);
    assert.equal(r2.status, 201);
    assert.equal(r2.headers.get('idempotency-replayed'), 'true');
    assert.equal(await r2.text(), await r1.text());
    assert.equal(waiting.runs.count, 0);
  });

  test('an abandoned claim is taken over after its lease (metric), and the old token can no longer complete', async () => {
    const redis = createRedis(REDIS_URL);
    clients.push(redis);
    await waitForRedis(redis);
    const store = redisIdempotencyStore({ redis, prefix });
    const registry = new Registry();
    const engine = createIdempotency({ store, registry, leaseMs: 300, renewEveryMs: 100 });
    const app = new Hono<{ Variables: IdempotencyVariables }>();
    let calls = 0;
    app.post('/t', idempotency(engine, { scope: () => 'tenant-1' }), (c) => {
      calls++;
      return c.json({ calls }, 201);
    });
    const key = randomUUID();
    const req = (body: string) =>
      app.request('/t', {
        method: 'POST',
        headers: { 'idempotency-key': `"${key}"`, 'content-type': 'application/json' },
        body,
      });
    // A "dead" owner: claims with the fingerprint of the request below, then never renews or completes.
    const recordKey = `${'tenant-1'.length}:tenant-1|${key}`;
    const fp = requestFingerprint({
      method: 'POST',
      route: '/t',
      body: '{"a":1}',
      contentType: 'application/json',
    });
    assert.equal((await store.claim(recordKey, fp, 'dead-owner', 300, 60_000)).kind, 'claimed');
    assert.equal((await req('{"a":1}')).status, 409);
    assert.equal((await req('{"a":2}')).status, 422, 'the fingerprint still binds the key during flight');
    await new Promise((r) => setTimeout(r, 400));
    const res = await req('{ "a": 1 }');
    assert.equal(res.status, 201);
    assert.equal(calls, 1);
    const takeovers = await registry.getSingleMetric('shoal_idempotency_lease_takeovers_total')?.get();
    assert.equal(takeovers?.values[0]?.value, 1);
    const stale = await store.complete(
      recordKey,
      'dead-owner',
      { kind: 'store', response: { status: 200, headers: [], body: new Uint8Array([1]) } },
      60_000,
    );
    assert.equal(stale, false, 'a stale owner cannot overwrite');
    const replay = await req('{"a":1}');
    assert.equal(replay.headers.get('idempotency-replayed'), 'true');
    assert.equal(await replay.text(), '{"calls":1}');
  });

  test('a handler that throws releases the key, so the retry runs', async () => {
    const app = new Hono<{ Variables: IdempotencyVariables }>();
    const redis = createRedis(REDIS_URL);
    clients.push(redis);
    await waitForRedis(redis);
    const engine = createIdempotency({ store: redisIdempotencyStore({ redis, prefix }) });
    let calls = 0;
    app.post('/x', idempotency(engine), (c) => {
      calls++;
      if (calls === 1) throw new Error('boom');
      return c.json({ calls });
    });
    app.onError((_err, c) => c.text('handler failed', 500));
    const key = k();
    const req = () =>
      app.request('/x', {
        method: 'POST',
        headers: { ...key, 'content-type': 'application/json' },
        body: '{}',
      });
    assert.equal((await req()).status, 500);
    assert.equal((await req()).status, 200);
    assert.equal(calls, 2);
  });

  test('the lease is renewed while handlers run past it: no takeover, two overlapping requests both kept', async () => {
    const redis = createRedis(REDIS_URL);
    clients.push(redis);
    await waitForRedis(redis);
    const registry = new Registry();
    const engine = createIdempotency({
      store: redisIdempotencyStore({ redis, prefix }),
      registry,
      leaseMs: 300,
      renewEveryMs: 100,
    });
    const app = new Hono<{ Variables: IdempotencyVariables }>();
    let calls = 0;
    const lost: boolean[] = [];
    app.post('/slow', idempotency(engine), async (c) => {
      calls++;
      await new Promise((r) => setTimeout(r, 900));
      lost.push(c.var.idempotency.leaseLost());
      return c.json({ done: true }, 201);
    });
    const keyA = k();
    const keyB = k();
    const req = (key: Record<string, string>) =>
      app.request('/slow', {
        method: 'POST',
        headers: { ...key, 'content-type': 'application/json' },
        body: '{}',
      });
    const first = req(keyA);
    await new Promise((r) => setTimeout(r, 150));
    const second = req(keyB);
    // Well past both leases (300 ms) without renewal; duplicates must still find them in flight.
    await new Promise((r) => setTimeout(r, 550));
    assert.equal((await req(keyA)).status, 409);
    assert.equal((await req(keyB)).status, 409);
    assert.equal((await first).status, 201);
    assert.equal((await second).status, 201);
    assert.equal(calls, 2);
    assert.deepEqual(lost, [false, false]);
    const takeovers = await registry.getSingleMetric('shoal_idempotency_lease_takeovers_total')?.get();
    assert.equal(takeovers?.values[0]?.value ?? 0, 0);
  });
});
