import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';
import v8 from 'node:v8';
import { runInNewContext } from 'node:vm';
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

test('a decision sent alone and the same decision in a shared call report the same counts', async () => {
  // A lone charged call takes the script's short path while every limit admits (and every counter
  // key exists), and the general path otherwise (first write, a rejection); a call of several
  // decisions always takes the general path. Both must count alike, for each algorithm, with
  // costs above 1 and limits that start rejecting midway. Hour-long windows keep a window
  // boundary out of the run, but the sliding limit's reset steps when one of its sub-windows (a
  // tenth of the hour) ends: both runs are made to fall inside one sub-window, by the clock the
  // scripts read (Redis TIME).
  const subWindowMs = 360_000;
  const [sec, micro] = (await redis.time()).map(Number) as [number, number];
  const into = (sec * 1000 + Math.floor(micro / 1000)) % subWindowMs;
  if (into > subWindowMs - 15_000) await new Promise((r) => setTimeout(r, subWindowMs - into + 100));
  const limits = {
    s: '40/h',
    f: { limit: '25/h', algorithm: 'fixed-window' as const },
    c: '1000/h',
    g: { limit: '18/h', algorithm: 'gcra' as const, burst: 18 },
  };
  const lone = make({ limits, blockCacheSize: 0 });
  const shared = make({ limits, blockCacheSize: 0 });
  const subjects = { s: 'x', f: 'y', c: 'all', g: 'z' };
  const cost = (i: number) => (i % 3 === 0 ? { f: 2 } : 1);
  const one: Awaited<ReturnType<RateLimiter['check']>>[] = [];
  for (let i = 0; i < 24; i++) one.push(await lone.check(subjects, { cost: cost(i) }));
  const all = await Promise.all(
    Array.from({ length: 24 }, (_, i) => shared.check(subjects, { cost: cost(i) })),
  );
  const view = (d: (typeof one)[number]) => ({
    allowed: d.allowed,
    rejectedBy: d.rejectedBy,
    remaining: d.limits.map((r) => [r.name, r.remaining]),
  });
  assert.deepEqual(one.map(view), all.map(view));
  // f (25, cost 2 on every third) runs out at the 19th decision, g (18) from the 20th on; a
  // rejected decision charges nothing, so a cheaper one after it may still fit
  let used = 0;
  let gcra = 0;
  const expected = Array.from({ length: 24 }, (_, i) => {
    const c = i % 3 === 0 ? 2 : 1;
    if (used + c > 25 || gcra + 1 > 18) return false;
    used += c;
    gcra += 1;
    return true;
  });
  assert.deepEqual(
    one.map((d) => d.allowed),
    expected,
  );
  const admitted = expected.filter(Boolean).length;
  assert.equal(one[18]!.rejectedBy, 'f');
  assert.equal(one.at(-1)!.rejectedBy, 'g');
  assert.equal((await lone.inspect('s', 'x')).remaining, 40 - admitted);
  assert.equal((await lone.inspect('c', 'all')).remaining, 1000 - admitted);
  assert.equal((await shared.inspect('f', 'y')).remaining, 25 - used);
  assert.equal((await lone.inspect('g', 'z')).remaining, 18 - gcra);
  for (let i = 0; i < 24; i++) {
    for (let k = 0; k < 4; k++) {
      const a = one[i]!.limits[k]!.resetMs;
      const b = all[i]!.limits[k]!.resetMs;
      assert.ok(Math.abs(a - b) < 1000, `decision ${i} limit ${k}: reset ${a} vs ${b} ms`);
    }
  }
});

test('a sliding state in the earlier 52-byte layout is carried over, and the stored sum always matches the counts', async () => {
  // The sliding state keeps the sum of its ten newer sub-window counts beside the newest count, so
  // the common admission reads four values; every write path must keep that sum exact, and a
  // state written by an earlier version (no sum, 52 bytes) must keep its counts on upgrade.
  const l = make({ limits: { s: '100/h' }, blockCacheSize: 0 });
  const key = l.keys.state('s', 'legacy');
  const [sec, usec] = (await admin.time()) as [number | string, number | string];
  const S = 3_600_000 * 100; // one sub-window of an hour, in microseconds
  const j = Math.floor((Number(sec) * 1e6 + Number(usec)) / S);
  const legacy = Buffer.alloc(52);
  legacy.writeDoubleLE(j, 0);
  legacy.writeUInt32LE(5, 8 + 4 * 9); // 5 in the sub-window before the newest
  legacy.writeUInt32LE(3, 8 + 4 * 10); // 3 in the newest
  await admin.set(key, legacy, 'PX', 3_600_000);
  assert.equal((await l.check({ s: 'legacy' })).limits[0]!.remaining, 100 - 8 - 1);
  const decode = async () => {
    const raw = (await admin.getBuffer(key))!;
    assert.equal(raw.length, 56);
    const counts = Array.from({ length: 12 }, (_, k) => raw.readUInt32LE(8 + 4 * k));
    const [, sum, newest, ...between] = counts;
    return { sum: sum!, newer: newest! + between.reduce((a, b) => a + b, 0) };
  };
  let state = await decode();
  assert.deepEqual(state, { sum: 9, newer: 9 });
  // lone decisions (in place, on the short path), then shared calls (additions summed per key),
  // then costs above 1: the sum follows each
  for (let i = 0; i < 5; i++) await l.check({ s: 'legacy' });
  await Promise.all(Array.from({ length: 20 }, () => l.check({ s: 'legacy' })));
  await Promise.all(Array.from({ length: 3 }, () => l.check({ s: 'legacy' }, { cost: 4 })));
  state = await decode();
  assert.deepEqual(state, { sum: 9 + 5 + 20 + 12, newer: 9 + 5 + 20 + 12 });
  assert.equal((await l.inspect('s', 'legacy')).remaining, 100 - state.sum);
});

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

test('lone decisions over changing sets of limits, costs and runtime overrides count every key exactly', async () => {
  // Lone decisions reuse their call bytes per sequence of limit configs: whatever the mix, each
  // key's count must be what its own decisions charged.
  const l = make({
    limits: { a: '100/min', b: '100/min', c: { limit: '100/min', algorithm: 'fixed-window' } },
    blockCacheSize: 0,
  });
  await l.start();
  const charged: Record<string, number> = {};
  const charge = (k: string, n: number) => {
    charged[k] = (charged[k] ?? 0) + n;
  };
  const shapes: [Record<string, string>, number][] = [
    [{ a: 'x', b: 'x', c: 'x' }, 1],
    [{ b: 'x', a: 'x' }, 1],
    [{ c: 'y', a: 'y' }, 1],
    [{ a: 'y', c: 'y' }, 1],
    [{ a: 'x', b: 'x', c: 'x' }, 3],
    [{ a: 'y', b: 'y' }, 1],
    [{ a: 'y' }, 1],
  ];
  for (let i = 0; i < 28; i++) {
    const [subjects, cost] = shapes[i % shapes.length]!;
    const d = await l.check(subjects, { cost });
    assert.equal(d.allowed, true);
    for (const r of d.limits) {
      charge(`${r.name}:${r.subject}`, cost);
      const want = r.requests - charged[`${r.name}:${r.subject}`]!;
      assert.equal(r.remaining, want, `${r.name}:${r.subject} after decision ${i}`);
    }
    // halfway, a runtime override gives limit c a new config: later decisions use it
    if (i === 13) {
      await l.setContext('c', { requests_per_minute: 50, enabled: true, mode: 'enforce' });
      await l.refresh();
    }
  }
  const c = await l.check({ c: 'x' });
  // the override did take effect for lone decisions after it
  assert.equal(c.limits[0]!.requests, 50);
  assert.ok(charged['c:x']! > 0);
  assert.equal(c.limits[0]!.remaining, 50 - charged['c:x']! - 1);
});

test('more distinct limit configs than the limiter keeps call bytes for are still decided exactly', async () => {
  // Each per-identity override is a config of its own; past the cap of kept sequences (64), a
  // lone decision is packed as usual.
  const l = make({
    limits: { ip: '1000/min', user: { limit: '1000/min', identity: true } },
    blockCacheSize: 0,
  });
  await l.start();
  const users = Array.from({ length: 80 }, (_, i) => `u${i}-${Date.now()}`);
  for (let i = 0; i < users.length; i++) {
    await l.setIdentity(users[i]!, { requests_per_minute: 100 + i, enabled: true, mode: 'enforce' });
  }
  await l.refresh();
  for (let round = 1; round <= 2; round++) {
    for (let i = 0; i < users.length; i++) {
      const d = await l.check({ ip: 'shared', user: users[i]! });
      assert.equal(d.allowed, true);
      const user = d.limits.find((r) => r.name === 'user')!;
      assert.equal(user.requests, 100 + i);
      assert.equal(user.remaining, 100 + i - round, `user ${i}, round ${round}`);
    }
  }
  const ip = await l.check({ ip: 'shared' });
  assert.equal(ip.limits[0]!.remaining, 1000 - 2 * users.length - 1);
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

test('state keys always expire: the first write of a (sub-)window sets the TTL, later writes keep it', async () => {
  // 2 s windows: sliding sub-windows of 200 ms, fixed windows of 2 s.
  const l = make({
    limits: {
      s: { limit: '1000/2s', algorithm: 'sliding-window' },
      f: { limit: '1000/2s', algorithm: 'fixed-window' },
      g: { limit: '1000/2s', algorithm: 'gcra' },
    },
  });
  const nowMs = async () => {
    const [sec, usec] = (await admin.time()) as [number | string, number | string];
    return Number(sec) * 1000 + Math.floor(Number(usec) / 1000);
  };
  // Start just after a 2 s boundary, so the next ~150 ms are inside one sliding sub-window and one fixed window.
  const t = await nowMs();
  await new Promise((r) => setTimeout(r, 2000 - (t % 2000) + 10));
  const subject = `ttl-${Date.now()}`;
  assert.equal((await l.check({ s: subject, f: subject, g: subject })).allowed, true);
  const key = (name: string) => l.keys.state(name, subject);
  const first = {
    s: await admin.pttl(key('s')),
    f: await admin.pttl(key('f')),
    g: await admin.pttl(key('g')),
  };
  for (const [name, ttl] of Object.entries(first)) assert.ok(ttl > 0, `${name} has a TTL (${ttl})`);
  assert.ok(first.s > 2000 && first.s <= 2200, `sliding TTL is window + one sub-window (${first.s})`);
  await new Promise((r) => setTimeout(r, 80));
  assert.equal((await l.check({ s: subject, f: subject, g: subject })).allowed, true);
  const same = { s: await admin.pttl(key('s')), f: await admin.pttl(key('f')) };
  assert.ok(
    same.s > 0 && same.s <= first.s - 50,
    `same sub-window: the TTL is kept, not reset (${first.s} -> ${same.s})`,
  );
  assert.ok(same.f > 0 && same.f <= first.f - 50, `same window: the TTL is kept (${first.f} -> ${same.f})`);
  // Into the next sliding sub-window: the TTL is set again from this write.
  await new Promise((r) => setTimeout(r, 200));
  assert.equal((await l.check({ s: subject, f: subject, g: subject })).allowed, true);
  const next = await admin.pttl(key('s'));
  // Kept rather than reset, it would now be about 200 ms lower than before.
  assert.ok(next > same.s, `a new sub-window sets the TTL afresh (${same.s} -> ${next})`);
  for (const name of ['s', 'f', 'g']) assert.ok((await admin.pttl(key(name))) > 0, `${name} still expires`);
});

test('each state key gets its own TTL, from the call for GCRA and from the window for counters, lone or batched', async () => {
  // Two GCRA limits with different TTLs, after a counter in config order: a mixed-up TTL
  // argument would show as the other limit's TTL.
  const l = make({
    limits: {
      s: { limit: '1000/4s', algorithm: 'sliding-window' },
      g1: { limit: '1000/2s', algorithm: 'gcra' },
      f: { limit: '1000/3s', algorithm: 'fixed-window' },
      g2: { limit: '10/1s', algorithm: 'gcra' },
    },
  });
  const run = `${Date.now()}`;
  const lone = `lone-${run}`;
  assert.equal((await l.check({ s: lone, g1: lone, f: lone, g2: lone })).allowed, true);
  // Again, now that the counters exist: the script's short path for a lone decision writes these.
  assert.equal((await l.check({ s: lone, g1: lone, f: lone, g2: lone })).allowed, true);
  // Decisions started in one turn share a call: the script's general loop writes these.
  const batched = Array.from({ length: 5 }, (_, i) => `batch-${run}-${i}`);
  const ds = await Promise.all(batched.map((x) => l.check({ f: x, g2: x, s: x, g1: x })));
  for (const d of ds) assert.equal(d.allowed, true);
  for (const subject of [lone, ...batched]) {
    const ttl = async (name: string) => admin.pttl(l.keys.state(name, subject));
    const [s, g1, f, g2] = await Promise.all([ttl('s'), ttl('g1'), ttl('f'), ttl('g2')]);
    // sliding: window + one sub-window = 4 400 ms; fixed: its window, 3 000 ms (less the time
    // since the window began); GCRA: burst x interval + 1 ms = 2 001 and 1 001 ms
    assert.ok(s > 4000 && s <= 4400, `${subject} sliding TTL ${s}`);
    assert.ok(f > 0 && f <= 3000, `${subject} fixed TTL ${f}`);
    assert.ok(g1 > 1800 && g1 <= 2001, `${subject} first GCRA TTL ${g1}`);
    assert.ok(g2 > 800 && g2 <= 1001, `${subject} second GCRA TTL ${g2}`);
  }
});

/** How many script calls the limiter made that Redis answered, from its latency histogram. */
async function redisCalls(registry: Registry): Promise<number> {
  const metrics = await registry.metrics();
  return Number(/shoal_ratelimit_redis_duration_seconds_count\{result="ok"\} (\d+)/.exec(metrics)?.[1]);
}

test('decisions started in one event-loop turn share script calls and are decided in order', async () => {
  const registry = new Registry();
  const l = make({
    limits: { a: '1000/min', b: { limit: '10/min', algorithm: 'gcra', burst: 10 }, c: '30/min' },
    registry,
  });
  await l.start();
  // 40 decisions issued together: a is shared, b and c by subject; b admits the first 10 of s0
  const ds = await Promise.all(
    Array.from({ length: 40 }, (_, i) => l.check({ a: 'all', b: 's0', c: i % 2 === 0 ? 'even' : 'odd' })),
  );
  const admitted = ds.flatMap((d, i) => (d.allowed ? [i] : []));
  assert.deepEqual(admitted, [0, 1, 2, 3, 4, 5, 6, 7, 8, 9], 'the first ten in issue order');
  for (const d of ds.slice(10)) assert.equal(d.rejectedBy, 'b');
  // remaining counts down through the batch exactly as separate calls would report it
  assert.deepEqual(
    ds.slice(0, 10).map((d) => d.limits[1]!.remaining),
    [9, 8, 7, 6, 5, 4, 3, 2, 1, 0],
  );
  // rejected decisions charged nothing: a saw exactly 10, each c subject 5
  assert.equal((await l.inspect('a', 'all')).remaining, 990);
  assert.equal((await l.inspect('c', 'even')).remaining, 25);
  assert.equal((await l.inspect('c', 'odd')).remaining, 25);
  const calls = await redisCalls(registry);
  // nothing was in flight, so the first went out at once; the other 39 as two calls (half of the
  // 40 waiting on Redis each, at most)
  assert.equal(calls, 3, '40 decisions go as three calls: 1, then 20 and 19');
  // every key written by the batch carries a TTL, including keys the batch created
  for (const [limit, subject] of [
    ['a', 'all'],
    ['b', 's0'],
    ['c', 'even'],
  ] as const) {
    const ttl = await admin.pttl(l.keys.state(limit, subject));
    assert.ok(ttl > 0, `${limit}:${subject} has TTL ${ttl}`);
  }
});

test('one call mixes admitted, shadow-rejected and rejected limits and reports each exactly', async () => {
  // The reply is variable-length (2 values per admitted limit, 4 per rejected one); a call whose
  // requests mix all three shapes must still come back value for value.
  const l = make({
    limits: { a: '2/min', s: { limit: '1/min', mode: 'shadow' } },
    blockCacheSize: 0,
  });
  const ds = await Promise.all(Array.from({ length: 4 }, () => l.check({ a: 'mix', s: 'mix' })));
  assert.deepEqual(
    ds.map((d) => d.allowed),
    [true, true, false, false],
  );
  // a admits two and then rejects; s (shadow) admits one and then only reports
  assert.deepEqual(
    ds.map((d) => d.limits.map((r) => [r.name, r.allowed, r.remaining])),
    [
      [
        ['a', true, 1],
        ['s', true, 0],
      ],
      [
        ['a', true, 0],
        ['s', false, 0],
      ],
      [
        ['a', false, 0],
        ['s', false, 0],
      ],
      [
        ['a', false, 0],
        ['s', false, 0],
      ],
    ],
  );
  for (const d of ds.slice(2)) {
    assert.equal(d.rejectedBy, 'a');
    assert.ok(d.retryAfterMs > 0 && d.retryAfterMs <= 60_000 + 6_000, `retry ${d.retryAfterMs}`);
  }
  assert.ok(ds[1]!.limits[1]!.retryAfterMs > 0, 'a shadow rejection still reports its wait');
  assert.equal(ds[1]!.rejectedBy, undefined);
});

test('a burst larger than one batch is split and still admits exactly the limit', async () => {
  const registry = new Registry();
  const l = make({ limits: { k: '150/min', other: '1000/min' }, registry });
  await l.start();
  const ds = await Promise.all(Array.from({ length: 300 }, () => l.check({ k: 'hot', other: 'x' })));
  assert.equal(ds.filter((d) => d.allowed).length, 150);
  assert.equal((await l.inspect('other', 'x')).remaining, 850);
  // all 300 start before any answer arrives (so the block cache cannot answer any): the first
  // alone, then 299 as 10 calls of 29-30 (at most 32 per call)
  assert.equal(await redisCalls(registry), 11);
});

test('a settled call is not kept reachable while later calls are in flight', async () => {
  // Under sustained concurrency the limiter's queue of deadlines seldom empties. A settled call
  // must let go of its decisions at once, not when the queue is next compacted (past 1 024).
  v8.setFlagsFromString('--expose-gc');
  const gc = runInNewContext('gc') as () => void;
  const l = make({ limits: { ip: '100000000/min' } });
  const early: WeakRef<Promise<unknown>>[] = [];
  const counts: number[] = [];
  let issued = 0;
  let settled = 0;
  await new Promise<void>((done, fail) => {
    const next = () => {
      const p = l.check({ ip: `k${issued % 40}` });
      if (issued < 300) early.push(new WeakRef(p));
      issued++;
      p.then(() => {
        settled++;
        if (issued < 2000) {
          next();
          // while the next decisions are in flight: how many of the first 300 are still held
          if (issued >= 400 && issued <= 1000 && issued % 100 === 0) {
            gc();
            counts.push(early.filter((r) => r.deref() !== undefined).length);
          }
        }
        if (settled === issued) done();
      }, fail);
    };
    for (let i = 0; i < 64; i++) next();
  });
  assert.equal(early.length, 300);
  assert.equal(counts.length, 7, 'counted seven times while calls were in flight');
  assert.deepEqual(counts, [0, 0, 0, 0, 0, 0, 0], 'none of the first 300 decisions is still reachable');
});
