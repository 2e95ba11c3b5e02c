import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';
import type { Redis } from 'ioredis';
import { Registry } from 'prom-client';
import { createRateLimiter, parseRate, type RateLimiter } from '../../src/ratelimit/index.js';
import { createRedis } from '../../src/stores/redis/client.js';
import { dropPrefix, REDIS_URL, testPrefix, testRedis } from '../helpers/stores.js';

const prefix = testPrefix('rlt');
let redis: Redis;
let admin: Redis;
const limiters: RateLimiter[] = [];

function make(
  opts: Partial<Parameters<typeof createRateLimiter>[0]> & {
    limits: Parameters<typeof createRateLimiter>[0]['limits'];
  },
) {
  // Generous deadline: these tests are about counting; deadlines and fallbacks are in failover.test.ts.
  const l = createRateLimiter({ redis, prefix: `${prefix}${limiters.length}:`, deadlineMs: 2000, ...opts });
  limiters.push(l);
  return l;
}

before(async () => {
  redis = createRedis(REDIS_URL, { failFast: false }) as Redis;
  admin = testRedis();
  await redis.ping();
});

after(async () => {
  for (const l of limiters) await l.close();
  await dropPrefix(admin, prefix);
  redis.disconnect();
  admin.disconnect();
});

test('limit strings parse strictly and name the bad value', () => {
  assert.deepEqual(parseRate('200/min'), { requests: 200, windowMs: 60_000 });
  assert.deepEqual(parseRate('1000/min'), { requests: 1000, windowMs: 60_000 });
  assert.deepEqual(parseRate('10/s'), { requests: 10, windowMs: 1000 });
  assert.deepEqual(parseRate('5000/h'), { requests: 5000, windowMs: 3_600_000 });
  assert.deepEqual(parseRate('100/10s'), { requests: 100, windowMs: 10_000 });
  for (const bad of ['200/mn', '-5/min', '0/min', '200', '/min', '1.5/min', '200/min/x', '200 per min']) {
    assert.throws(
      () => parseRate(bad, 'ORDERS_LIMIT_IP'),
      (e: Error) => {
        assert.match(e.message, /ORDERS_LIMIT_IP/);
        assert.ok(e.message.includes(JSON.stringify(bad)), e.message);
        return true;
      },
    );
  }
  assert.throws(() => createRateLimiter({ redis, limits: { ip: '200/mn' } }), /"200\/mn"/);
});

test('K=3 limits where the third rejects: the first two are not charged', async () => {
  const l = make({
    limits: {
      a: '10/min',
      b: { limit: '10/min', algorithm: 'gcra' },
      c: { limit: '2/min', algorithm: 'fixed-window' },
    },
    blockCacheSize: 0,
  });
  const s = { a: 'x', b: 'x', c: 'x' };
  assert.equal((await l.check(s)).allowed, true);
  assert.equal((await l.check(s)).allowed, true);
  const before = await Promise.all([l.inspect('a', 'x'), l.inspect('b', 'x')]);
  assert.equal(before[0].remaining, 8);
  assert.equal(before[1].remaining, 8);
  for (let i = 0; i < 5; i++) {
    const d = await l.check(s);
    assert.equal(d.allowed, false);
    assert.equal(d.rejectedBy, 'c');
    assert.equal(d.limits.length, 3);
    assert.ok(d.retryAfterMs > 0);
    const c = d.limits.find((r) => r.name === 'c')!;
    assert.equal(c.allowed, false);
  }
  const afterState = await Promise.all([l.inspect('a', 'x'), l.inspect('b', 'x')]);
  assert.equal(afterState[0].remaining, 8, 'sliding-window limit charged by a rejected decision');
  assert.equal(afterState[1].remaining, 8, 'GCRA limit charged by a rejected decision');
  // a, b still have room for a request that does not touch c
  assert.equal((await l.check({ a: 'x', b: 'x' })).allowed, true);
});

for (const algorithm of ['sliding-window', 'gcra', 'fixed-window'] as const) {
  test(`500 parallel decisions on one key with limit 100 admit exactly 100 (${algorithm})`, async () => {
    const l = make({ limits: { k: { limit: '100/min', algorithm } } });
    const ds = await Promise.all(Array.from({ length: 500 }, () => l.check({ k: 'hot' })));
    assert.equal(ds.filter((d) => d.allowed).length, 100);
    assert.equal(ds.filter((d) => !d.allowed && d.rejectedBy === 'k').length, 400);
  });
}

test('per-request cost is charged on every limit', async () => {
  const l = make({ limits: { a: '10/min', g: { limit: '10/min', algorithm: 'gcra' } }, blockCacheSize: 0 });
  const d = await l.check({ a: 'u', g: 'u' }, { cost: 4 });
  assert.equal(d.allowed, true);
  assert.deepEqual(
    d.limits.map((r) => r.remaining),
    [6, 6],
  );
  assert.equal((await l.check({ a: 'u', g: 'u' }, { cost: 7 })).allowed, false);
  assert.equal((await l.check({ a: 'u', g: 'u' }, { cost: 6 })).allowed, true);
});

test('long subjects are hashed, never stored raw', async () => {
  const l = make({ limits: { id: '5/min' } });
  const token = 'secret-token-'.repeat(20);
  const d = await l.check({ id: token });
  assert.equal(d.allowed, true);
  assert.ok(d.limits[0]!.subject.startsWith('#'));
  const keys: string[] = [];
  let cursor = '0';
  do {
    const [next, batch] = await admin.scan(cursor, 'MATCH', `${prefix}*`, 'COUNT', 1000);
    cursor = next;
    keys.push(...batch);
  } while (cursor !== '0');
  assert.ok(keys.length > 0);
  assert.ok(!keys.some((k) => k.includes('secret-token')), keys.join(','));
});

test('block cache answers repeated rejections without Redis and never admits what Redis rejects', async () => {
  const registry = new Registry();
  const l = make({ limits: { k: '3/min' }, registry });
  const ds = [];
  for (let i = 0; i < 50; i++) ds.push(await l.check({ k: 'hot' }));
  assert.equal(ds.filter((d) => d.allowed).length, 3);
  const cache = ds.filter((d) => d.source === 'cache').length;
  assert.equal(cache, 46, 'all but the first rejection from the cache');
  const text = await registry.metrics();
  assert.match(text, /shoal_ratelimit_decisions_total\{limit="k",outcome="rejected",source="cache"\} 46/);
  // reset clears the cache fleet-wide
  await l.reset('k', 'hot');
  assert.equal((await l.check({ k: 'hot' })).allowed, true);
});

test('admin block rejects a key for a duration, then it recovers', async () => {
  const l = make({ limits: { k: '100/min' }, blockCacheSize: 0 });
  await l.block('k', 'bad', 300);
  const d = await l.check({ k: 'bad' });
  assert.equal(d.allowed, false);
  assert.ok(d.retryAfterMs > 0 && d.retryAfterMs <= 300);
  assert.equal((await l.inspect('k', 'bad')).blocked, true);
  await new Promise((r) => setTimeout(r, 350));
  assert.equal((await l.check({ k: 'bad' })).allowed, true);
});
