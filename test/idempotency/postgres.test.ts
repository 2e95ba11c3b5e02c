// PostgreSQL transactional mode: the claim, the handler's writes and the stored response commit
// together, or nothing does.
import assert from 'node:assert/strict';
import { randomUUID } from 'node:crypto';
import { after, before, test } from 'node:test';
import { Hono } from 'hono';
import type pg from 'pg';
import { type IdempotencyVariables, idempotency } from '../../src/adapters/hono/idempotency.js';
import { createIdempotency } from '../../src/idempotency/engine.js';
import { postgresIdempotencyStore, purgeIdempotencyRecords } from '../../src/idempotency/postgres-store.js';
import { migrateToolkit } from '../../src/stores/postgres/migrate.js';
import type { PgClient } from '../../src/stores/postgres/pool.js';
import { type TestSchema, testSchema } from '../helpers/stores.js';
import { ORDERS_DDL } from './helpers.js';

let schema: TestSchema;

before(async () => {
  schema = await testSchema('idem');
  await migrateToolkit(schema.pool);
  await schema.pool.query(ORDERS_DDL);
});

after(async () => {
  await schema.drop();
});

/** One instance: the reference-app shape of POST /orders, on its own pool. */
function instance(pool: pg.Pool, name: string) {
  const engine = createIdempotency<PgClient>({ store: postgresIdempotencyStore({ pool }), leaseMs: 5000 });
  const app = new Hono<{ Variables: IdempotencyVariables<PgClient> }>();
  const runs = { count: 0 };
  app.post('/orders', idempotency(engine), async (c) => {
    runs.count++;
    const body = await c.req.json<{ sku: string; qty: number }>();
    const tx = await c.var.idempotency.tx();
    const { rows } = await tx.query<{ id: number }>(
      'INSERT INTO orders (idem_key, sku, qty, instance) VALUES ($1, $2, $3, $4) RETURNING id',
      [c.var.idempotency.key, body.sku, body.qty, name],
    );
    if (c.req.header('x-fail') === 'throw') throw new Error('failed after the insert');
    if (c.req.header('x-fail') === '503') return c.json({ error: 'downstream' }, 503);
    if (body.qty <= 0) return c.json({ error: 'qty must be positive' }, 400);
    c.header('location', `/orders/${rows[0]!.id}`);
    return c.json({ id: rows[0]!.id, instance: name }, 201);
  });
  app.onError((_err, c) => c.text('handler failed', 500));
  const send = (key: string, body: object, headers: Record<string, string> = {}) =>
    app.request('/orders', {
      method: 'POST',
      headers: { 'content-type': 'application/json', 'idempotency-key': `"${key}"`, ...headers },
      body: JSON.stringify(body),
    });
  return { send, runs };
}

const count = async (key: string) =>
  Number((await schema.pool.query('SELECT count(*) AS n FROM orders WHERE idem_key = $1', [key])).rows[0].n);
const records = async () =>
  Number((await schema.pool.query('SELECT count(*) AS n FROM shoal_idempotency')).rows[0].n);

test('handler throws after its insert -> nothing committed and the key released; the retry commits once', async () => {
  const one = instance(schema.pool, 'one');
  const key = randomUUID();
  const before = await records();
  assert.equal((await one.send(key, { sku: 'a', qty: 1 }, { 'x-fail': 'throw' })).status, 500);
  assert.equal(await count(key), 0, 'the insert rolled back');
  assert.equal(await records(), before, 'the key was released');
  const retry = await one.send(key, { sku: 'a', qty: 1 });
  assert.equal(retry.status, 201);
  assert.equal(await count(key), 1);
});

test('a 5xx answer rolls the transaction back and frees the key', async () => {
  const one = instance(schema.pool, 'one');
  const key = randomUUID();
  assert.equal((await one.send(key, { sku: 'b', qty: 1 }, { 'x-fail': '503' })).status, 503);
  assert.equal(await count(key), 0);
  assert.equal((await one.send(key, { sku: 'b', qty: 1 })).status, 201);
  assert.equal(await count(key), 1);
});

test('result committed with the row; another instance (own pool) replays it byte for byte; 422 on another payload', async () => {
  const one = instance(schema.pool, 'one');
  const otherPool = new (await import('pg')).default.Pool({ connectionString: schema.url, max: 2 });
  try {
    const two = instance(otherPool, 'two');
    const key = randomUUID();
    const first = await one.send(key, { sku: 'c', qty: 2 });
    assert.equal(first.status, 201);
    const firstText = await first.text();
    const replay = await two.send(key, { qty: 2, sku: 'c' });
    assert.equal(replay.status, 201);
    assert.equal(await replay.text(), firstText);
    assert.equal(replay.headers.get('location'), first.headers.get('location'));
    assert.equal(replay.headers.get('idempotency-replayed'), 'true');
    assert.equal(two.runs.count, 0);
    assert.equal((await two.send(key, { qty: 3, sku: 'c' })).status, 422);
    assert.equal(await count(key), 1);
  } finally {
    await otherPool.end();
  }
});

test('a stored 4xx commits too (the handler decided), and is replayed', async () => {
  const one = instance(schema.pool, 'one');
  const key = randomUUID();
  assert.equal((await one.send(key, { sku: 'd', qty: 0 })).status, 400);
  const again = await one.send(key, { sku: 'd', qty: 0 });
  assert.equal(again.status, 400);
  assert.equal(again.headers.get('idempotency-replayed'), 'true');
  assert.equal(one.runs.count, 1);
});

test('purgeIdempotencyRecords deletes only records past their retention', async () => {
  const key = randomUUID();
  await schema.pool.query(
    "INSERT INTO shoal_idempotency (key, fingerprint, state, expires_at) VALUES ($1, 'f', 'done', now() - interval '1 s')",
    [key],
  );
  const left = await records();
  assert.equal(await purgeIdempotencyRecords(schema.pool), 1);
  assert.equal(await records(), left - 1);
});
