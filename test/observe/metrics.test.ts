// Prometheus metrics against real sockets, a real pg Pool and a real Redis.
import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';
import { Hono } from 'hono';
import pg from 'pg';
import { metricsHandler, type ObserveEnv, observe } from '../../src/adapters/hono/observe.js';
import { createLogger } from '../../src/observe/log.js';
import { createMetrics, type Metrics } from '../../src/observe/metrics.js';
import { createRedis, type RedisClient, waitForRedis } from '../../src/stores/redis/client.js';
import { DATABASE_URL, REDIS_URL, testPrefix } from '../helpers/stores.js';
import { captureSink, type Served, serveApp } from './helpers.js';

/** Value of one sample line, matched by metric name and a set of label="value" pairs. */
function sample(text: string, name: string, labels: Record<string, string> = {}): number | undefined {
  for (const line of text.split('\n')) {
    if (!line.startsWith(`${name}{`) && !line.startsWith(`${name} `)) continue;
    if (!Object.entries(labels).every(([k, v]) => line.includes(`${k}="${v}"`))) continue;
    return Number(line.slice(line.lastIndexOf(' ') + 1));
  }
  return undefined;
}

let metrics: Metrics;
let served: Served;
let release: (() => void) | undefined;
let slowStarted: Promise<void>;
let markSlowStarted: () => void;
let stopMonitor: () => void;

before(async () => {
  metrics = createMetrics({ service: 'orders', instanceId: 'orders-3' });
  stopMonitor = metrics.startEventLoopMonitor();
  const logger = createLogger({
    service: 'orders',
    instanceId: 'orders-3',
    destination: captureSink().stream,
  });
  const app = new Hono<ObserveEnv>();
  app.use(observe({ logger, metrics, instanceId: 'orders-3' }));
  app.get('/metrics', metricsHandler(metrics));
  app.get('/api/orders/:id', (c) => c.json({ id: c.req.param('id') }));
  app.post('/api/orders', (c) => c.json({ error: 'nope' }, 422));
  app.get('/slow', async (c) => {
    await new Promise<void>((resolve) => {
      release = resolve;
      markSlowStarted();
    });
    return c.text('done');
  });
  slowStarted = new Promise((r) => {
    markSlowStarted = r;
  });
  served = await serveApp(app);
  metrics.trackServer(served.server as unknown as import('node:net').Server);
});

after(async () => {
  release?.();
  stopMonitor();
  await served.close();
});

test('/metrics exposes request count and duration histogram by route, method and status, with default labels', async () => {
  for (let i = 0; i < 3; i++) await (await fetch(`${served.url}/api/orders/${i}`)).arrayBuffer();
  await (await fetch(`${served.url}/api/orders`, { method: 'POST' })).arrayBuffer();
  await (await fetch(`${served.url}/nothing/here`)).arrayBuffer();
  const res = await fetch(`${served.url}/metrics`);
  assert.equal(res.status, 200);
  assert.match(res.headers.get('content-type') ?? '', /^text\/plain; version=0\.0\.4/);
  const text = await res.text();
  const ok = {
    route: '/api/orders/:id',
    method: 'GET',
    status: '200',
    service: 'orders',
    instance: 'orders-3',
  };
  assert.equal(sample(text, 'shoal_http_requests_total', ok), 3);
  assert.equal(sample(text, 'shoal_http_request_duration_seconds_count', ok), 3);
  assert.equal(sample(text, 'shoal_http_request_duration_seconds_bucket', { ...ok, le: '+Inf' }), 3);
  assert.ok((sample(text, 'shoal_http_request_duration_seconds_sum', ok) ?? -1) >= 0);
  assert.equal(
    sample(text, 'shoal_http_requests_total', { route: '/api/orders', method: 'POST', status: '422' }),
    1,
  );
  assert.equal(sample(text, 'shoal_http_requests_total', { route: 'unmatched', status: '404' }), 1);
  assert.ok(!text.includes('/nothing/here'), 'raw paths never become labels');
  // Every sample of ours carries both default labels.
  const ours = text.split('\n').filter((l) => l.startsWith('shoal_') && !l.startsWith('#'));
  assert.ok(ours.length > 10);
  for (const l of ours)
    assert.match(l, /service="orders".*instance="orders-3"|instance="orders-3".*service="orders"/);
  // Process metrics are on by default, on this registry only.
  assert.ok(sample(text, 'shoal_process_resident_memory_bytes') !== undefined);
});

test('in-flight requests and open connections are reported while a request is running', async () => {
  const pending = fetch(`${served.url}/slow`);
  await slowStarted;
  const during = await (await fetch(`${served.url}/metrics`)).text();
  // The slow request plus the scrape itself.
  assert.equal(sample(during, 'shoal_http_requests_in_flight'), 2);
  assert.ok((sample(during, 'shoal_http_open_connections') ?? 0) >= 2);
  release?.();
  assert.equal(await (await pending).text(), 'done');
  const afterText = await (await fetch(`${served.url}/metrics`)).text();
  assert.equal(sample(afterText, 'shoal_http_requests_in_flight'), 1);
  assert.equal(sample(afterText, 'shoal_http_requests_total', { route: '/slow', status: '200' }), 1);
});

test('event-loop delay is measured', async () => {
  // Block the loop twice for ~120 ms among normal ticks.
  for (let i = 0; i < 2; i++) {
    await new Promise((r) => setTimeout(r, 60));
    const until = performance.now() + 120;
    while (performance.now() < until) {
      // busy
    }
  }
  await new Promise((r) => setTimeout(r, 60));
  const text = await metrics.render();
  const max = sample(text, 'shoal_event_loop_delay_seconds', { quantile: '1' });
  assert.ok(max !== undefined && max >= 0.08, `max delay ${max}`);
  assert.ok((sample(text, 'shoal_event_loop_delay_seconds', { quantile: '0.5' }) ?? -1) >= 0);
  assert.ok(metrics.eventLoopDelayP99Ms() > 0);
});

test('pg pool total/idle/waiting gauges follow a real pool', async () => {
  const m = createMetrics({ service: 's', instanceId: 'i', processMetrics: false });
  const pool = new pg.Pool({ connectionString: DATABASE_URL, max: 1 });
  try {
    m.observePgPool(pool, 'main');
    const held = await pool.connect();
    const waiting = pool.connect();
    let text = await m.render();
    assert.equal(sample(text, 'shoal_pg_pool_total_connections', { pool: 'main' }), 1);
    assert.equal(sample(text, 'shoal_pg_pool_idle_connections', { pool: 'main' }), 0);
    assert.equal(sample(text, 'shoal_pg_pool_waiting_clients', { pool: 'main' }), 1);
    held.release();
    const second = await waiting;
    second.release();
    text = await m.render();
    assert.equal(sample(text, 'shoal_pg_pool_total_connections', { pool: 'main' }), 1);
    assert.equal(sample(text, 'shoal_pg_pool_idle_connections', { pool: 'main' }), 1);
    assert.equal(sample(text, 'shoal_pg_pool_waiting_clients', { pool: 'main' }), 0);
  } finally {
    await pool.end();
  }
  // An ended pool disappears instead of reporting stale numbers.
  assert.equal(sample(await m.render(), 'shoal_pg_pool_total_connections', { pool: 'main' }), undefined);
});

test('Redis command latency is recorded per command and outcome on a real Redis', async () => {
  const m = createMetrics({ service: 's', instanceId: 'i', processMetrics: false });
  const redis: RedisClient = createRedis(REDIS_URL);
  const prefix = testPrefix('obs');
  try {
    await waitForRedis(redis);
    m.observeRedis(redis, 'cache');
    await redis.set(`${prefix}a`, 'text');
    await redis.get(`${prefix}a`);
    await redis.get(`${prefix}a`);
    await assert.rejects(redis.incr(`${prefix}a`));
    await redis.pipeline().set(`${prefix}b`, '1').incr(`${prefix}b`).exec();
    const text = await m.render();
    assert.equal(
      sample(text, 'shoal_redis_command_duration_seconds_count', {
        client: 'cache',
        command: 'get',
        outcome: 'ok',
      }),
      2,
    );
    assert.equal(
      sample(text, 'shoal_redis_command_duration_seconds_count', { command: 'incr', outcome: 'error' }),
      1,
    );
    assert.equal(
      sample(text, 'shoal_redis_command_duration_seconds_count', { command: 'incr', outcome: 'ok' }),
      1,
    );
    assert.equal(
      sample(text, 'shoal_redis_command_duration_seconds_count', { command: 'set', outcome: 'ok' }),
      2,
    );
    assert.ok((sample(text, 'shoal_redis_command_duration_seconds_sum', { command: 'get' }) ?? -1) > 0);
  } finally {
    await redis.del(`${prefix}a`, `${prefix}b`).catch(() => {});
    redis.disconnect();
  }
});

test('two Metrics objects in one process share no state', async () => {
  const a = createMetrics({ service: 'a', instanceId: 'a-1' });
  const b = createMetrics({ service: 'b', instanceId: 'b-1' });
  a.observeRequest('/x', 'GET', 200, 0.01);
  a.observeRequest('/x', 'GET', 200, 0.02);
  a.requestStarted();
  b.observeRequest('/y', 'PUT', 204, 0.01);
  const ta = await a.render();
  const tb = await b.render();
  assert.equal(sample(ta, 'shoal_http_requests_total', { route: '/x', service: 'a', instance: 'a-1' }), 2);
  assert.equal(sample(ta, 'shoal_http_requests_total', { route: '/y' }), undefined);
  assert.equal(sample(tb, 'shoal_http_requests_total', { route: '/y', service: 'b', instance: 'b-1' }), 1);
  assert.equal(sample(tb, 'shoal_http_requests_total', { route: '/x' }), undefined);
  assert.equal(sample(ta, 'shoal_http_requests_in_flight'), 1);
  assert.equal(sample(tb, 'shoal_http_requests_in_flight'), 0);
  assert.ok(!tb.includes('service="a"'));
  assert.notEqual(a.registry, b.registry);
  // A custom prefix gives a separate family of names.
  const c = createMetrics({ service: 'c', instanceId: 'c-1', prefix: 'app_', processMetrics: false });
  c.observeRequest('/z', 'GET', 200, 0.001);
  assert.equal(sample(await c.render(), 'app_http_requests_total', { route: '/z' }), 1);
});

test('request histogram: buckets are cumulative, +Inf equals count, sum adds the observed seconds', async () => {
  const m = createMetrics({
    service: 's',
    instanceId: 'i',
    processMetrics: false,
    httpBuckets: [0.1, 1, 0.01],
  });
  for (const v of [0.005, 0.05, 0.05, 0.5, 5]) m.observeRequest('/r/:id', 'GET', 200, v);
  m.observeRequest('/r/:id', 'GET', 503, 0.2);
  const text = await m.render();
  const l = { route: '/r/:id', method: 'GET', status: '200' };
  assert.equal(sample(text, 'shoal_http_request_duration_seconds_bucket', { ...l, le: '0.01' }), 1);
  assert.equal(sample(text, 'shoal_http_request_duration_seconds_bucket', { ...l, le: '0.1' }), 3);
  assert.equal(sample(text, 'shoal_http_request_duration_seconds_bucket', { ...l, le: '1' }), 4);
  assert.equal(sample(text, 'shoal_http_request_duration_seconds_bucket', { ...l, le: '+Inf' }), 5);
  assert.equal(sample(text, 'shoal_http_request_duration_seconds_count', l), 5);
  assert.ok(Math.abs((sample(text, 'shoal_http_request_duration_seconds_sum', l) ?? 0) - 5.605) < 1e-9);
  assert.equal(sample(text, 'shoal_http_requests_total', l), 5);
  assert.equal(sample(text, 'shoal_http_requests_total', { ...l, status: '503' }), 1);
  assert.match(text, /# TYPE shoal_http_request_duration_seconds histogram/);
  assert.match(text, /# TYPE shoal_http_requests_total counter/);
  // The JSON form agrees, and resetting the registry empties the series.
  const json = await m.registry.getMetricsAsJSON();
  const counter = json.find((x) => x.name === 'shoal_http_requests_total');
  assert.equal(counter?.values.length, 2);
  m.registry.resetMetrics();
  assert.equal(sample(await m.render(), 'shoal_http_requests_total', l), undefined);
  // Series that alternate (route, method or status differing by one) are each counted apart,
  // including the one recorded last before the reset.
  const calls: [string, string, number][] = [
    ['/r/:id', 'GET', 503],
    ['/r/:id', 'GET', 200],
    ['/r/:id', 'GET', 200],
    ['/r/:id', 'POST', 200],
    ['/r/:id', 'GET', 404],
    ['/q', 'GET', 200],
    ['/r/:id', 'GET', 200],
  ];
  for (const [route, method, status] of calls) m.observeRequest(route, method, status, 0.001);
  const after = await m.render();
  const count = (route: string, method: string, status: string) =>
    sample(after, 'shoal_http_requests_total', { route, method, status });
  assert.equal(count('/r/:id', 'GET', '200'), 3);
  assert.equal(count('/r/:id', 'POST', '200'), 1);
  assert.equal(count('/r/:id', 'GET', '404'), 1);
  assert.equal(count('/q', 'GET', '200'), 1);
  assert.equal(count('/r/:id', 'GET', '503'), 1);
});
