// Redis down or frozen: fail-closed (503 problem+json, handler not run) by default, fail-open on request.
import assert from 'node:assert/strict';
import { randomUUID } from 'node:crypto';
import { after, before, test } from 'node:test';
import { Hono } from 'hono';
import { Registry } from 'prom-client';
import { idempotency } from '../../src/adapters/hono/idempotency.js';
import type { Logger } from '../../src/contracts/index.js';
import { createIdempotency, type IdempotencyOptions } from '../../src/idempotency/engine.js';
import { redisIdempotencyStore } from '../../src/idempotency/redis-store.js';
import { createRedis, type RedisClient, waitForRedis } from '../../src/stores/redis/client.js';
import { type PrivateRedis, startPrivateRedis } from '../helpers/private-redis.js';

let server: PrivateRedis;
let redis: RedisClient;

before(async () => {
  server = await startPrivateRedis();
  redis = createRedis(server.url, { onError: () => {} });
  await waitForRedis(redis);
});

after(async () => {
  redis.disconnect();
  await server.stop();
});

function build(options: Partial<IdempotencyOptions> = {}) {
  const registry = new Registry();
  const lines: { level: string; obj: object; msg?: string }[] = [];
  const logger: Logger = {
    info: (obj, msg) => lines.push({ level: 'info', obj, msg }),
    warn: (obj, msg) => lines.push({ level: 'warn', obj, msg }),
    error: (obj, msg) => lines.push({ level: 'error', obj, msg }),
    debug: () => {},
    child: () => logger,
  };
  const engine = createIdempotency({ store: redisIdempotencyStore({ redis }), registry, logger, ...options });
  const runs = { count: 0 };
  const app = new Hono();
  app.post('/pay', idempotency(engine), (c) => {
    runs.count++;
    return c.json({ paid: true }, 201);
  });
  const send = () =>
    app.request('/pay', {
      method: 'POST',
      headers: { 'content-type': 'application/json', 'idempotency-key': `"${randomUUID()}"` },
      body: '{"amount":5}',
    });
  const errors = async () =>
    ((await registry.getSingleMetric('shoal_idempotency_store_errors_total')?.get())?.values ?? []).reduce(
      (s, v) => s + v.value,
      0,
    );
  return { send, runs, lines, errors };
}

test('Redis up: the protected route works (baseline for the failure cases)', async () => {
  const { send, runs } = build();
  assert.equal((await send()).status, 201);
  assert.equal(runs.count, 1);
});

test('Redis killed: fail-closed answers 503 problem+json, does not run the handler, logs and counts', async () => {
  await server.kill();
  try {
    const closed = build();
    const res = await closed.send();
    assert.equal(res.status, 503);
    assert.equal(res.headers.get('content-type'), 'application/problem+json');
    assert.equal(
      ((await res.json()) as { type: string }).type,
      'urn:shoal:problem:idempotency-store-unavailable',
    );
    assert.equal(closed.runs.count, 0);
    assert.equal(await closed.errors(), 1);
    assert.ok(closed.lines.some((l) => l.level === 'error' && /unavailable/.test(l.msg ?? '')));

    const open = build({ onStoreError: 'fail-open' });
    const ran = await open.send();
    assert.equal(ran.status, 201);
    assert.equal(open.runs.count, 1);
    assert.equal(await open.errors(), 1);
  } finally {
    await server.start();
    await waitForRedis(redis, 10_000);
  }
});

test('Redis frozen (SIGSTOP): the store deadline turns a hang into a prompt 503', async () => {
  const { send, runs } = build({ storeTimeoutMs: 200 });
  server.pause();
  try {
    const started = performance.now();
    const res = await send();
    const took = performance.now() - started;
    assert.equal(res.status, 503);
    assert.equal(runs.count, 0);
    assert.ok(took < 3000, `took ${took} ms`);
  } finally {
    server.resume();
  }
});
