// The reference app as a real 3-replica fleet behind the balancer: rate limits and idempotency
// must hold across replicas, not per process.
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { after, before, test } from 'node:test';
import { fleetDir, httpRequest, ROOT, startUp, type UpProcess } from '../fleet/helpers.js';
import { dropPrefix, type TestSchema, testRedis, testSchema } from '../helpers/stores.js';

const ADMIN = 'test-admin-token-0123456789';
let schema: TestSchema;
let up: UpProcess;
let base: string;
let cleanupDir: () => void;
const prefix = `orders-test:${randomBytes(4).toString('hex')}:`;

before(async () => {
  schema = await testSchema('orders');
  const fd = fleetDir({
    name: 'orders-test',
    resources: { redis: true, postgres: true },
    services: {
      api: {
        command: ['node', `${ROOT}/examples/orders/dist/server.js`],
        replicas: 3,
        port: 0,
        dependsOn: ['redis', 'postgres'],
        drainDelay: '200ms',
        env: {
          SHOAL_ADMIN_TOKEN: ADMIN,
          ORDERS_KEY_PREFIX: prefix,
          ORDERS_LIMIT_IP: '100000/min',
          ORDERS_LIMIT_IDENTITY: '100000/min',
          LOG_LEVEL: 'warn',
        },
      },
    },
  });
  cleanupDir = fd.cleanup;
  up = await startUp(fd, {
    env: { DATABASE_URL: schema.url, REDIS_URL: 'redis://127.0.0.1:6379' },
    timeoutMs: 120_000,
  });
  await up.waitFor(/3\/3 replica\(s\) ready/, 120_000);
  base = up.url('api');
});

after(async () => {
  await up?.stop();
  cleanupDir?.();
  const r = testRedis();
  await dropPrefix(r, prefix);
  await r.quit();
  await schema?.drop();
});

const json = { 'content-type': 'application/json' };

test('a context limit set through the admin API holds fleet-wide: 200 writes, exactly 50 admitted', async () => {
  const put = await httpRequest(`${base}/api/admin/rate-limits/context/orders-write`, {
    method: 'PUT',
    headers: { ...json, authorization: `Bearer ${ADMIN}` },
    body: JSON.stringify({ requests_per_minute: 50, enabled: true, mode: 'enforce' }),
  });
  assert.equal(put.status, 200, put.body);
  // Every replica picks the change up within 1 s.
  await new Promise((r) => setTimeout(r, 1200));

  const statuses = new Map<number, number>();
  const instances = new Set<string>();
  let retryAfterMissing = 0;
  for (let wave = 0; wave < 10; wave++) {
    const batch = await Promise.all(
      Array.from({ length: 20 }, (_, i) =>
        httpRequest(`${base}/api/orders`, {
          method: 'POST',
          headers: { ...json, 'idempotency-key': `"w-${wave}-${i}-${prefix}"` },
          body: JSON.stringify({ item: 'limit-test', quantity: 1 }),
        }),
      ),
    );
    for (const r of batch) {
      statuses.set(r.status, (statuses.get(r.status) ?? 0) + 1);
      instances.add(String(r.headers['x-instance-id']));
      if (r.status === 429 && r.headers['retry-after'] === undefined) retryAfterMissing++;
    }
  }
  assert.deepEqual(Object.fromEntries(statuses), { 201: 50, 429: 150 });
  assert.equal(retryAfterMissing, 0, 'every 429 carries Retry-After');
  assert.equal(instances.size, 3, 'the writes were spread over all three replicas');
  const rows = await schema.pool.query("SELECT count(*)::int AS n FROM orders WHERE item = 'limit-test'");
  assert.equal(rows.rows[0].n, 50);

  const del = await httpRequest(`${base}/api/admin/rate-limits/context/orders-write`, {
    method: 'DELETE',
    headers: { authorization: `Bearer ${ADMIN}` },
  });
  assert.ok(del.status === 200 || del.status === 204, del.body);
});

test('20 concurrent POSTs with one Idempotency-Key across 3 replicas create exactly one order', async () => {
  // Lift the write limit well above this test's needs (the previous test may have used it up).
  await httpRequest(`${base}/api/admin/rate-limits/context/orders-write`, {
    method: 'PUT',
    headers: { ...json, authorization: `Bearer ${ADMIN}` },
    body: JSON.stringify({ requests_per_minute: 100000, enabled: true, mode: 'enforce' }),
  });
  await new Promise((r) => setTimeout(r, 1200));
  const key = `"same-${prefix}"`;
  const body = JSON.stringify({ item: 'exactly-once', quantity: 3, note: 'retry storm' });
  const results = await Promise.all(
    Array.from({ length: 20 }, () =>
      httpRequest(`${base}/api/orders`, {
        method: 'POST',
        headers: { ...json, 'idempotency-key': key },
        body,
      }),
    ),
  );
  const created = results.filter((r) => r.status === 201);
  const conflicts = results.filter((r) => r.status === 409);
  assert.equal(created.length + conflicts.length, 20, results.map((r) => r.status).join(','));
  assert.ok(created.length >= 1);
  const first = created.find((r) => r.headers['idempotency-replayed'] === undefined) ?? created[0]!;
  for (const r of created) assert.equal(r.body, first.body, 'replays are byte-identical');
  for (const r of conflicts) assert.ok(r.headers['retry-after'] !== undefined);
  const rows = await schema.pool.query("SELECT count(*)::int AS n FROM orders WHERE item = 'exactly-once'");
  assert.equal(rows.rows[0].n, 1);

  // Same payload with keys reordered replays; a changed field is 422.
  const again = await httpRequest(`${base}/api/orders`, {
    method: 'POST',
    headers: { ...json, 'idempotency-key': key },
    body: JSON.stringify({ note: 'retry storm', quantity: 3, item: 'exactly-once' }),
  });
  assert.equal(again.status, 201);
  assert.equal(again.headers['idempotency-replayed'], 'true');
  assert.equal(again.body, first.body);
  const changed = await httpRequest(`${base}/api/orders`, {
    method: 'POST',
    headers: { ...json, 'idempotency-key': key },
    body: JSON.stringify({ item: 'exactly-once', quantity: 4, note: 'retry storm' }),
  });
  assert.equal(changed.status, 422);
  assert.match(String(changed.headers['content-type']), /application\/problem\+json/);
});

test('bad input gets problem+json and loses nothing', async () => {
  const cases: [string, Record<string, string>, string, number][] = [
    ['no key', json, '{"item":"a","quantity":1}', 400],
    ['bad body', { ...json, 'idempotency-key': `"bad-${prefix}"` }, '{"item":"","quantity":-2}', 400],
    ['not json', { ...json, 'idempotency-key': `"nj-${prefix}"` }, '{item:', 400],
    ['long key', { ...json, 'idempotency-key': `"${'k'.repeat(256)}"` }, '{"item":"a","quantity":1}', 400],
  ];
  for (const [name, headers, body, status] of cases) {
    const r = await httpRequest(`${base}/api/orders`, { method: 'POST', headers, body });
    assert.equal(r.status, status, `${name}: ${r.body}`);
    assert.match(String(r.headers['content-type']), /application\/problem\+json/, name);
  }
  const big = await httpRequest(`${base}/api/orders`, {
    method: 'POST',
    headers: { ...json, 'idempotency-key': `"big-${prefix}"` },
    body: JSON.stringify({ item: 'x'.repeat(2 * 1024 * 1024), quantity: 1 }),
  });
  assert.equal(big.status, 413);
  const who = await httpRequest(`${base}/api/whoami`);
  const w = JSON.parse(who.body);
  assert.equal(w.instance, who.headers['x-instance-id']);
  assert.equal(w.requestId, who.headers['x-request-id']);
  assert.equal(w.ip, '127.0.0.1');
  const missing = await httpRequest(`${base}/api/orders/999999999`);
  assert.equal(missing.status, 404);
  assert.match(String(missing.headers['content-type']), /application\/problem\+json/);
});
