import assert from 'node:assert/strict';
import type { AddressInfo } from 'node:net';
import { after, before, test } from 'node:test';
import { type ServerType, serve } from '@hono/node-server';
import { Hono } from 'hono';
import type { Redis } from 'ioredis';
import { Registry } from 'prom-client';
import {
  envRate,
  type HttpRateLimits,
  httpRateLimits,
  identityFromBearer,
} from '../../src/adapters/hono/ratelimit.js';
import { createRedis, waitForRedis } from '../../src/stores/redis/client.js';
import { dropPrefix, REDIS_URL, testPrefix, testRedis } from '../helpers/stores.js';

const TOKEN = 'admin-token-0123456789abcdef';
const prefix = testPrefix('rlh');

interface Instance {
  rl: HttpRateLimits;
  redis: Redis;
  server: ServerType;
  url: string;
  registry: Registry;
}

const instances: Instance[] = [];
let check: Redis;

async function startInstance(env: Record<string, string>): Promise<Instance> {
  const redis = createRedis(REDIS_URL, { connectionName: `rl-test-${instances.length}` }) as Redis;
  await waitForRedis(redis);
  const registry = new Registry();
  const rl = httpRateLimits({
    redis,
    registry,
    prefix,
    ip: envRate(env, 'ORDERS_LIMIT_IP', '200/min'),
    identity: envRate(env, 'ORDERS_LIMIT_IDENTITY', '100/min'),
    writes: { context: 'orders-write', limit: envRate(env, 'ORDERS_LIMIT_WRITES', '500/min') },
    adminToken: TOKEN,
    configPollMs: 300,
    // 200 concurrent requests through 3 servers in one process on a shared 2-core machine: a 50 ms
    // deadline would route some decisions to the local fallback, which this file does not test.
    deadlineMs: 2000,
  });
  await rl.start();
  const app = new Hono();
  // Admin first, so operators are not rate limited by the limits they manage.
  app.route('/api/admin', rl.admin);
  app.use('/api/*', rl.middleware);
  app.get('/api/orders', (c) => c.json([]));
  app.post('/api/orders', (c) => c.json({ id: 1 }, 201));
  const server = serve({ fetch: app.fetch, port: 0, hostname: '127.0.0.1' });
  await new Promise<void>((r) => server.once('listening', () => r()));
  const url = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
  const inst = { rl, redis, server, url, registry };
  instances.push(inst);
  return inst;
}

const admin = (inst: Instance, method: string, path: string, body?: unknown, token = TOKEN) =>
  fetch(`${inst.url}/api/admin${path}`, {
    method,
    headers: { authorization: `Bearer ${token}`, 'content-type': 'application/json' },
    body: body === undefined ? undefined : typeof body === 'string' ? body : JSON.stringify(body),
  });

before(async () => {
  check = testRedis();
  for (let i = 0; i < 3; i++) await startInstance({});
});

after(async () => {
  for (const i of instances) {
    await new Promise((r) => i.server.close(r));
    await i.rl.close();
    i.redis.disconnect();
  }
  await dropPrefix(check, prefix);
  check.disconnect();
});

test('context limit 50/min set via the admin API on one instance: 200 writes over 3 instances admit exactly 50', async () => {
  const put = await admin(instances[0]!, 'PUT', '/rate-limits/context/orders-write', {
    requests_per_minute: 50,
    burst_size: 10,
    enabled: true,
    mode: 'enforce',
  });
  assert.equal(put.status, 200);
  const version = ((await put.json()) as { version: number }).version;
  // every instance has applied it (pub/sub), well within a second
  const t0 = Date.now();
  while (instances.some((i) => i.rl.limiter.runtime.version < version)) {
    assert.ok(Date.now() - t0 < 1000, 'an instance did not apply the change within 1 s');
    await new Promise((r) => setTimeout(r, 10));
  }
  const results = await Promise.all(
    Array.from({ length: 200 }, (_, n) =>
      fetch(`${instances[n % 3]!.url}/api/orders`, { method: 'POST', body: '{}' }).then(async (r) => ({
        status: r.status,
        retryAfter: r.headers.get('retry-after'),
        type: r.headers.get('content-type'),
        body: r.status === 429 ? ((await r.json()) as Record<string, unknown>) : await r.text(),
      })),
    ),
  );
  const ok = results.filter((r) => r.status === 201);
  const limited = results.filter((r) => r.status === 429);
  assert.equal(ok.length, 50);
  assert.equal(limited.length, 150);
  for (const r of limited) {
    assert.ok(Number(r.retryAfter) >= 1, 'Retry-After missing');
    assert.equal(r.type, 'application/problem+json');
    const body = r.body as Record<string, unknown>;
    assert.equal(body.limit, 'orders-write');
    assert.equal(body.status, 429);
    assert.ok(!JSON.stringify(body).includes('127.0.0.1'), 'problem body leaks a client key');
  }
  // the IP limit was charged exactly for the 50 admitted writes (none for the rejected ones)
  const inspect = await admin(instances[1]!, 'GET', '/rate-limits/keys/ip/127.0.0.1');
  assert.equal(((await inspect.json()) as { remaining: number }).remaining, 150);
  // reads are not writes: still admitted
  assert.equal((await fetch(`${instances[2]!.url}/api/orders`)).status, 200);
  const del = await admin(instances[2]!, 'DELETE', '/rate-limits/context/orders-write');
  assert.equal(del.status, 200);
  await admin(instances[2]!, 'DELETE', '/rate-limits/keys/ip/127.0.0.1');
  await admin(instances[2]!, 'DELETE', '/rate-limits/keys/orders-write/all');
});

test('rate-limit headers: RateLimit / RateLimit-Policy and X-RateLimit-*', async () => {
  const r = await fetch(`${instances[0]!.url}/api/orders`);
  assert.equal(r.status, 200);
  assert.match(r.headers.get('ratelimit-policy') ?? '', /^"ip";q=200;w=60$/);
  assert.match(r.headers.get('ratelimit') ?? '', /^"ip";r=\d+;t=\d+$/);
  assert.equal(r.headers.get('x-ratelimit-limit'), '200');
  assert.ok(Number(r.headers.get('x-ratelimit-remaining')) < 200);
  assert.ok(Number(r.headers.get('x-ratelimit-reset')) > 0);
  const w = await fetch(`${instances[0]!.url}/api/orders`, {
    method: 'POST',
    headers: { authorization: 'Bearer user-token-1' },
  });
  assert.equal(w.status, 201);
  assert.match(
    w.headers.get('ratelimit-policy') ?? '',
    /"ip";q=200;w=60, "identity";q=100;w=60, "orders-write";q=500;w=60/,
  );
});

test('admin API: 401 without a token, 403 with a wrong one, 400 problem+json on invalid bodies', async () => {
  const i = instances[0]!;
  const none = await fetch(`${i.url}/api/admin/rate-limits/context/orders-write`);
  assert.equal(none.status, 401);
  assert.equal(none.headers.get('content-type'), 'application/problem+json');
  assert.equal(
    (await admin(i, 'GET', '/rate-limits/context/orders-write', undefined, 'wrong-token')).status,
    403,
  );
  assert.equal((await admin(i, 'GET', '/rate-limits', undefined, 'wrong-token')).status, 403);
  for (const body of [
    '{not json',
    { requests_per_minute: -5 },
    { requests_per_minute: 10, mode: 'observe' },
    { requests_per_minute: 10, extra: true },
    { burst_size: 3 },
    { requests_per_minute: '10' },
  ]) {
    const r = await admin(i, 'PUT', '/rate-limits/context/orders-write', body);
    assert.equal(r.status, 400, JSON.stringify(body));
    assert.equal(r.headers.get('content-type'), 'application/problem+json');
    const p = (await r.json()) as { type: string; detail: string };
    assert.equal(p.type, 'urn:shoal:problem:bad-request');
  }
  const bad = await admin(i, 'POST', '/rate-limits/keys/ip/1.2.3.4/block', { duration_seconds: 0 });
  assert.equal(bad.status, 400);
  const get = await admin(i, 'GET', '/rate-limits/context/orders-write');
  assert.equal(get.status, 200);
  const d = (await get.json()) as { default: { rate: string }; override: unknown };
  assert.equal(d.default.rate, '500/min');
  assert.equal(d.override, null);
});

test('a limit changed through the admin API is enforced by every instance within 1 s; a missed message is caught up', async () => {
  // Written straight to Redis without a publish: only the version check can find it.
  const ctx = 'orders-write';
  await admin(instances[0]!, 'DELETE', `/rate-limits/keys/${ctx}/all`);
  const t0 = Date.now();
  await check
    .multi()
    .hset(
      `${prefix}{cfg}ctx`,
      ctx,
      JSON.stringify({ requests_per_minute: 3, enabled: true, mode: 'enforce' }),
    )
    .incr(`${prefix}{cfg}ver`)
    .exec();
  const target = Number(await check.get(`${prefix}{cfg}ver`));
  while (instances.some((i) => i.rl.limiter.runtime.version < target)) {
    assert.ok(Date.now() - t0 < 1000, 'missed message not caught up within 1 s');
    await new Promise((r) => setTimeout(r, 10));
  }
  const statuses: number[] = [];
  for (let n = 0; n < 6; n++) {
    statuses.push((await fetch(`${instances[n % 3]!.url}/api/orders`, { method: 'POST' })).status);
  }
  assert.deepEqual(statuses, [201, 201, 201, 429, 429, 429]);
  await admin(instances[0]!, 'DELETE', `/rate-limits/context/${ctx}`);
  await admin(instances[0]!, 'DELETE', `/rate-limits/keys/${ctx}/all`);
});

test('shadow mode never rejects but is counted', async () => {
  await admin(instances[0]!, 'DELETE', '/rate-limits/keys/orders-write/all');
  const put = await admin(instances[1]!, 'PUT', '/rate-limits/context/orders-write', {
    requests_per_minute: 4,
    enabled: true,
    mode: 'shadow',
  });
  const { version } = (await put.json()) as { version: number };
  const t0 = Date.now();
  while (instances.some((i) => i.rl.limiter.runtime.version < version)) {
    assert.ok(Date.now() - t0 < 1000);
    await new Promise((r) => setTimeout(r, 10));
  }
  const statuses = await Promise.all(
    Array.from({ length: 12 }, (_, n) =>
      fetch(`${instances[n % 3]!.url}/api/orders`, { method: 'POST' }).then((r) => r.status),
    ),
  );
  assert.ok(
    statuses.every((s) => s === 201),
    statuses.join(','),
  );
  let shadow = 0;
  for (const i of instances) {
    const m = await i.registry.getSingleMetricAsString('shoal_ratelimit_shadow_rejections_total');
    const hit = /shoal_ratelimit_shadow_rejections_total\{limit="orders-write"\} (\d+)/.exec(m);
    shadow += hit ? Number(hit[1]) : 0;
  }
  assert.equal(shadow, 8);
  await admin(instances[0]!, 'DELETE', '/rate-limits/context/orders-write');
  await admin(instances[0]!, 'DELETE', '/rate-limits/keys/orders-write/all');
});

test('per-identity override and block of a key apply on every instance', async () => {
  const token = 'vip-token-xyz';
  const id = identityFromBearer(`Bearer ${token}`)!;
  const put = await admin(instances[0]!, 'PUT', `/rate-limits/identity/${encodeURIComponent(id)}`, {
    requests_per_minute: 2,
    enabled: true,
  });
  assert.equal(put.status, 200);
  const { version } = (await put.json()) as { version: number };
  const t0 = Date.now();
  while (instances.some((i) => i.rl.limiter.runtime.version < version)) {
    assert.ok(Date.now() - t0 < 1000);
    await new Promise((r) => setTimeout(r, 10));
  }
  const statuses: number[] = [];
  for (let n = 0; n < 4; n++) {
    const r = await fetch(`${instances[n % 3]!.url}/api/orders`, {
      headers: { authorization: `Bearer ${token}` },
    });
    statuses.push(r.status);
    if (r.status === 429) assert.equal(((await r.json()) as { limit: string }).limit, 'identity');
  }
  assert.deepEqual(statuses, [200, 200, 429, 429]);
  await admin(instances[0]!, 'DELETE', `/rate-limits/identity/${encodeURIComponent(id)}`);
  // block another identity for 2 s through instance 2; instance 0 rejects it
  const other = identityFromBearer('Bearer blocked-user')!;
  const block = await admin(
    instances[2]!,
    'POST',
    `/rate-limits/keys/identity/${encodeURIComponent(other)}/block`,
    {
      duration_seconds: 2,
    },
  );
  assert.equal(block.status, 200);
  const r = await fetch(`${instances[0]!.url}/api/orders`, {
    headers: { authorization: 'Bearer blocked-user' },
  });
  assert.equal(r.status, 429);
  const inspect = await admin(
    instances[1]!,
    'GET',
    `/rate-limits/keys/identity/${encodeURIComponent(other)}`,
  );
  assert.equal(((await inspect.json()) as { blocked: boolean }).blocked, true);
  assert.equal(
    (await admin(instances[1]!, 'DELETE', `/rate-limits/keys/identity/${encodeURIComponent(other)}`)).status,
    200,
  );
  const again = await fetch(`${instances[0]!.url}/api/orders`, {
    headers: { authorization: 'Bearer blocked-user' },
  });
  assert.equal(again.status, 200, 'reset did not clear the block cache on another instance');
});

test('a malformed env limit fails at startup naming the variable and value', () => {
  assert.throws(
    () => envRate({ ORDERS_LIMIT_IP: '200/mn' }, 'ORDERS_LIMIT_IP', '200/min'),
    /ORDERS_LIMIT_IP.*"200\/mn"/,
  );
  assert.throws(
    () => envRate({ ORDERS_LIMIT_WRITES: '-5/min' }, 'ORDERS_LIMIT_WRITES', '500/min'),
    /ORDERS_LIMIT_WRITES.*"-5\/min"/,
  );
  assert.equal(envRate({ ORDERS_LIMIT_IP: '1000/min' }, 'ORDERS_LIMIT_IP', '200/min'), '1000/min');
});
