// Several real instances (child processes) sharing one store: concurrency, SIGKILL, SIGSTOP.
import assert from 'node:assert/strict';
import { randomUUID } from 'node:crypto';
import { after, before, describe, test } from 'node:test';
import { migrateToolkit } from '../../src/stores/postgres/migrate.js';
import {
  dropPrefix,
  REDIS_URL,
  type TestSchema,
  testPrefix,
  testRedis,
  testSchema,
} from '../helpers/stores.js';
import {
  type Instance,
  loopbackRecordKey,
  ORDERS_DDL,
  post,
  type Reply,
  sleep,
  startInstance,
  until,
} from './helpers.js';

const LEASE_MS = 2000;

// One set of processes serves both stores (/redis/orders, /postgres/orders): starting a process is
// the slow part on a shared 2-core machine. Each store gets its own victim for the SIGKILL test.
let schema: TestSchema;
const prefix = testPrefix('idem');
const redis = testRedis();
const instances: Instance[] = [];
let a: Instance;
let b: Instance;
let c: Instance;
const victims: Record<string, Instance> = {};

before(async () => {
  schema = await testSchema('idem');
  await schema.pool.query(ORDERS_DDL);
  await migrateToolkit(schema.pool);
  const env = { REDIS_URL, PREFIX: prefix, DATABASE_URL: schema.url, LEASE_MS: String(LEASE_MS) };
  const started = await Promise.all(['A', 'B', 'C', 'V1', 'V2'].map((n) => startInstance(n, env)));
  instances.push(...started);
  [a, b, c] = started as [Instance, Instance, Instance];
  victims.redis = started[3]!;
  victims.postgres = started[4]!;
});

after(async () => {
  await Promise.all(instances.map((i) => i.kill('SIGKILL')));
  await dropPrefix(redis, prefix);
  await redis.quit();
  await schema.drop();
});

for (const storeKind of ['redis', 'postgres'] as const) {
  describe(`idempotency across instances (${storeKind} store)`, () => {
    const path = `/${storeKind}/orders`;

    const orderCount = async (key: string) =>
      Number(
        (await schema.pool.query('SELECT count(*) AS n FROM orders WHERE idem_key = $1', [key])).rows[0].n,
      );
    const claimed = async (key: string): Promise<boolean> => {
      if (storeKind === 'redis') return (await redis.exists(prefix + loopbackRecordKey(key))) === 1;
      const r = await schema.pool.query('SELECT 1 FROM shoal_idempotency WHERE key = $1', [
        loopbackRecordKey(key),
      ]);
      return r.rowCount === 1;
    };

    test('20 concurrent POSTs with one key across 3 instances -> one order; others 409 or the identical replay', async () => {
      const key = randomUUID();
      const body = JSON.stringify({ sku: 'apple', qty: 3 });
      const replies = await Promise.all(
        Array.from({ length: 20 }, (_, i) =>
          post(`${[a, b, c][i % 3]!.url}${path}`, body, { key, delayMs: 300 }),
        ),
      );
      const firsts = replies.filter(
        (r) => r.status === 201 && r.headers.get('idempotency-replayed') === null,
      );
      assert.equal(firsts.length, 1, `statuses: ${replies.map((r) => r.status).join(',')}`);
      const first = firsts[0]!;
      for (const r of replies) {
        if (r === first) continue;
        if (r.status === 409) {
          assert.equal(r.headers.get('content-type'), 'application/problem+json');
          assert.ok(Number(r.headers.get('retry-after')) >= 1);
          continue;
        }
        assert.equal(r.status, 201);
        assert.equal(r.headers.get('idempotency-replayed'), 'true');
        assert.equal(r.text, first.text);
      }
      assert.equal(await orderCount(key), 1);
      // Once finished, every instance replays the same result.
      for (const inst of [a, b, c]) {
        const r = await post(`${inst.url}${path}`, body, { key });
        assert.equal(r.status, 201);
        assert.equal(r.headers.get('idempotency-replayed'), 'true');
        assert.equal(r.text, first.text);
      }
    });

    test('SIGKILL between claim and response: 409 before the lease expires, then exactly one run', async () => {
      const key = randomUUID();
      const body = JSON.stringify({ sku: 'pear', qty: 1 });
      const pending = post(`${victims[storeKind]!.url}${path}`, body, { key, delayMs: 20_000 }).catch(
        (e: Error) => e,
      );
      await until(() => claimed(key), 10_000, 'the victim to claim the key');
      await sleep(100); // the PostgreSQL handler has inserted (uncommitted) by now
      await victims[storeKind]!.kill('SIGKILL');
      const killedAt = Date.now();
      assert.ok((await pending) instanceof Error, 'the killed instance must not answer');

      const early = await post(`${a.url}${path}`, body, { key });
      assert.equal(early.status, 409, early.text);
      assert.ok(Number(early.headers.get('retry-after')) >= 1);
      assert.equal(JSON.parse(early.text).type, 'urn:shoal:problem:idempotency-in-flight');

      await sleep(Math.max(0, LEASE_MS + 300 - (Date.now() - killedAt)));
      const retry = await post(`${b.url}${path}`, body, { key });
      assert.equal(retry.status, 201, retry.text);
      assert.equal(retry.headers.get('idempotency-replayed'), null);
      assert.equal(JSON.parse(retry.text).instance, 'B');
      const again = await post(`${c.url}${path}`, body, { key });
      assert.equal(again.headers.get('idempotency-replayed'), 'true');
      assert.equal(again.text, retry.text);
      assert.equal(await orderCount(key), 1);
    });

    test('an owner paused past its lease cannot overwrite the result of the instance that took over', async () => {
      const key = randomUUID();
      const body = JSON.stringify({ sku: 'plum', qty: 2 });
      // C sleeps 1.5 s in its handler; it is frozen meanwhile, so it resumes long after its lease.
      const slow: Promise<Reply> = post(`${c.url}${path}`, body, { key, delayMs: 1500 });
      await until(() => claimed(key), 10_000, 'C to claim the key');
      await sleep(100);
      c.pause();
      try {
        await sleep(LEASE_MS + 400);
        const takeover = await post(`${a.url}${path}`, body, { key });
        assert.equal(takeover.status, 201, takeover.text);
        assert.equal(JSON.parse(takeover.text).instance, 'A');
        c.resume();
        const stale = await slow;
        if (storeKind === 'postgres') {
          // Its transaction rolled back with the refused completion: it answers with what stands.
          assert.equal(stale.status, 201);
          assert.equal(stale.headers.get('idempotency-replayed'), 'true');
          assert.equal(stale.text, takeover.text);
          assert.equal(await orderCount(key), 1);
        } else {
          assert.equal(JSON.parse(stale.text).instance, 'C');
        }
        const replay = await post(`${b.url}${path}`, body, { key });
        assert.equal(replay.headers.get('idempotency-replayed'), 'true');
        assert.equal(
          replay.text,
          takeover.text,
          'the stored result is still the one of the instance that took over',
        );
      } finally {
        c.resume();
      }
    });
  });
}
