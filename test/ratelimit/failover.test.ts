import assert from 'node:assert/strict';
import { once } from 'node:events';
import { type AddressInfo, createServer } from 'node:net';
import { after, before, test } from 'node:test';
import { Redis as IORedis, type Redis } from 'ioredis';
import { Registry } from 'prom-client';
import type { Logger } from '../../src/contracts/index.js';
import { createRateLimiter, type FailurePolicy, type RateLimiter } from '../../src/ratelimit/index.js';
import { createRedis, waitForRedis } from '../../src/stores/redis/client.js';
import { type PrivateRedis, startPrivateRedis } from '../helpers/private-redis.js';

let pr: PrivateRedis;
const clients: Redis[] = [];
const limiters: RateLimiter[] = [];

function captureLogger(lines: Array<Record<string, unknown>>): Logger {
  const log: Logger = {
    info: (o) => lines.push({ level: 'info', ...o }),
    warn: (o) => lines.push({ level: 'warn', ...o }),
    error: (o) => lines.push({ level: 'error', ...o }),
    debug: () => {},
    child: () => log,
  };
  return log;
}

async function make(policy: FailurePolicy, registry: Registry, lines: Array<Record<string, unknown>>) {
  const redis = createRedis(pr.url) as Redis;
  redis.on('error', () => {});
  await waitForRedis(redis);
  clients.push(redis);
  const l = createRateLimiter({
    redis,
    prefix: `fo:${policy}:`,
    limits: { ip: { limit: '60/min', onStoreFailure: policy } },
    replicas: 3,
    deadlineMs: 50,
    breaker: { failureThreshold: 3, cooldownMs: 300 },
    registry,
    logger: captureLogger(lines),
  });
  limiters.push(l);
  await l.start();
  return l;
}

before(async () => {
  pr = await startPrivateRedis();
});
after(async () => {
  for (const l of limiters) await l.close();
  for (const c of clients) c.disconnect();
  await pr.stop();
});

async function timed(l: RateLimiter, subject: string) {
  const t = performance.now();
  const d = await l.check({ ip: subject });
  return { d, ms: performance.now() - t };
}

test('Redis stopped or hung mid-run: every decision within the deadline under each policy; recovery without restart', async () => {
  const registry = new Registry();
  const lines: Array<Record<string, unknown>> = [];
  const open = await make('open', registry, lines);
  const closed = await make('closed', registry, lines);
  const local = await make('local', registry, lines);
  const all = [open, closed, local];
  for (const l of all) assert.equal((await l.check({ ip: 'a' })).source, 'redis');

  // 1. Redis hangs (SIGSTOP): calls time out at the deadline, then the breaker bypasses Redis.
  pr.pause();
  const SLACK = 150; // event-loop noise on a shared 2-core machine
  for (let i = 0; i < 30; i++) {
    const [o, c, lo] = await Promise.all(all.map((l) => timed(l, `a`)));
    for (const r of [o!, c!, lo!])
      assert.ok(r.ms < 50 + SLACK, `decision took ${r.ms.toFixed(1)} ms while Redis hung`);
    assert.equal(o!.d.allowed, true);
    assert.equal(o!.d.source, 'fallback');
    assert.equal(c!.d.allowed, false);
    assert.equal(c!.d.storeUnavailable, true);
  }
  // local: 60/min over 3 replicas = 20 per instance for a fresh subject
  const localAdmitted = (await Promise.all(Array.from({ length: 5 }, () => local.check({ ip: 'b' })))).filter(
    (d) => d.allowed,
  ).length;
  assert.equal(localAdmitted, 5);
  for (const l of all) assert.notEqual(l.breakerState, 'closed');

  // 2. Redis killed: commands fail at once; still answered without waiting.
  pr.resume();
  await pr.kill();
  let localAllowed = 0;
  for (let i = 0; i < 25; i++) {
    const r = await timed(local, 'c');
    assert.ok(r.ms < 50 + SLACK, `decision took ${r.ms.toFixed(1)} ms with Redis down`);
    if (r.d.allowed) localAllowed++;
  }
  assert.equal(localAllowed, 20, 'local fallback must admit limit / replicas');

  // 3. Redis back: the same objects return to Redis decisions (breaker half-open probe succeeds).
  await pr.start();
  const deadline = Date.now() + 10_000;
  for (const l of all) {
    for (;;) {
      const d = await l.check({ ip: 'recovered' });
      if (d.source === 'redis') break;
      assert.ok(Date.now() < deadline, 'limiter did not recover after Redis came back');
      await new Promise((r) => setTimeout(r, 100));
    }
    assert.equal(l.breakerState, 'closed');
  }
  const metrics = await registry.metrics();
  assert.match(
    metrics,
    /shoal_ratelimit_fallback_total\{limit="ip",policy="closed",reason="(timeout|breaker_open)"\} \d+/,
  );
  assert.match(metrics, /shoal_ratelimit_breaker_transitions_total\{to="open"\} [1-9]/);
  assert.match(metrics, /shoal_ratelimit_breaker_transitions_total\{to="closed"\} [1-9]/);
  assert.match(metrics, /shoal_ratelimit_redis_duration_seconds_count\{result="ok"\} [1-9]/);
  assert.match(metrics, /shoal_ratelimit_redis_duration_seconds_count\{result="(timeout|error)"\} [1-9]/);
  assert.match(metrics, /shoal_ratelimit_redis_duration_seconds_bucket\{result="ok",le="\+Inf"\} [1-9]/);
  const transitions = lines.filter((l) => l.event === 'ratelimit.breaker');
  assert.ok(transitions.some((l) => l.to === 'open' && l.level === 'error'));
  assert.ok(transitions.some((l) => l.to === 'closed'));
  assert.ok(
    lines.some((l) => l.event === 'ratelimit.rejected'),
    'no audit line for rejections',
  );
});

test('several calls in flight against a Redis that never answers: each falls back at its own deadline', async () => {
  // A server that accepts connections, reads, and never answers.
  const silent = createServer((socket) => socket.on('data', () => {}));
  silent.listen(0, '127.0.0.1');
  await once(silent, 'listening');
  const redis = new IORedis({
    host: '127.0.0.1',
    port: (silent.address() as AddressInfo).port,
    enableReadyCheck: false,
    maxRetriesPerRequest: null,
  });
  redis.on('error', () => {});
  const l = createRateLimiter({
    redis,
    prefix: 'fo:silent:',
    limits: { ip: { limit: '60/min', onStoreFailure: 'open' } },
    deadlineMs: 150,
    // the breaker would answer later calls at once after the first failures; this is about deadlines
    breaker: { failureThreshold: 100, cooldownMs: 1000 },
    registry: new Registry(),
  });
  try {
    const t0 = performance.now();
    const started: number[] = [];
    const calls: Array<Promise<number>> = [];
    // three separate script calls, 50 ms apart, all in flight at once
    for (let i = 0; i < 3; i++) {
      if (i > 0) await new Promise((r) => setTimeout(r, 50));
      started.push(performance.now() - t0);
      calls.push(
        l.check({ ip: `silent-${i}` }).then((d) => {
          assert.equal(d.allowed, true, 'open policy admits');
          assert.equal(d.source, 'fallback');
          return performance.now() - t0;
        }),
      );
    }
    const settled = await Promise.all(calls);
    for (let i = 0; i < 3; i++) {
      const waited = settled[i]! - started[i]!;
      // not before its own deadline, and not held until a later one
      assert.ok(waited >= 148 && waited < 150 + 45, `call ${i} settled after ${waited.toFixed(1)} ms`);
    }
  } finally {
    await l.close();
    redis.disconnect();
    silent.close();
  }
});
