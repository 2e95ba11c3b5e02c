// Health probes: unit behaviour of the check runner against real stores, then the served probes
// through a Redis outage on a private redis-server.
import assert from 'node:assert/strict';
import { after, describe, test } from 'node:test';
import { Hono } from 'hono';
import pg from 'pg';
import { healthRoutes } from '../../src/adapters/hono/health.js';
import { serve } from '../../src/adapters/hono/serve.js';
import type { HealthCheck } from '../../src/contracts/index.js';
import { eventLoopCheck, postgresCheck, redisCheck } from '../../src/lifecycle/checks.js';
import { createHealth } from '../../src/lifecycle/health.js';
import { createShoal } from '../../src/runtime.js';
import { createRedis } from '../../src/stores/redis/client.js';
import { type PrivateRedis, startPrivateRedis } from '../helpers/private-redis.js';
import { DATABASE_URL, REDIS_URL } from '../helpers/stores.js';

const cleanups: (() => Promise<unknown> | unknown)[] = [];
after(async () => {
  for (const c of cleanups.reverse()) await c();
});

const opts = { service: 'svc', instanceId: 'svc-1', version: '9.9.9', intervalMs: 60_000, timeoutMs: 150 };

const check = (name: string, required: boolean, run: HealthCheck['run']): HealthCheck => ({
  name,
  required,
  run,
});

type Entry = Record<string, unknown>;
const entry = (body: Record<string, unknown>, key: string): Entry =>
  ((body.checks as Record<string, Entry[]>)[key] ?? [])[0] as Entry;

describe('createHealth', () => {
  test('starting -> 503; started with passing checks -> 200; draining -> 503; live stays 200', async () => {
    const h = createHealth(opts);
    h.add(check('dep', true, async () => ({ ok: true })));
    assert.equal(h.ready().status, 503);
    assert.equal(h.ready().body.output, 'starting');
    assert.equal(h.startup().status, 503);
    h.markStarted();
    // a required check that has not run yet is not a pass
    assert.equal(h.ready().status, 503);
    await h.runOnce();
    assert.equal(h.startup().status, 200);
    const ready = h.ready();
    assert.equal(ready.status, 200);
    assert.equal(ready.body.status, 'pass');
    assert.equal(ready.body.serviceId, 'svc');
    assert.equal(ready.body.version, '9.9.9');
    h.setDraining();
    assert.equal(h.ready().status, 503);
    assert.match(String(h.ready().body.output), /draining/);
    assert.equal(h.live().status, 200);
    assert.equal(h.live().body.status, 'pass');
  });

  test('a hanging check times out; the probe answers at once from the last result', async () => {
    const h = createHealth(opts);
    // ignores its abort signal on purpose
    let calls = 0;
    h.add(
      check('stuck', true, () => {
        calls++;
        return new Promise(() => {});
      }),
    );
    h.add(check('extra', false, async () => ({ ok: false, message: 'cache cold' })));
    h.markStarted();
    const t0 = Date.now();
    await h.runOnce();
    const took = Date.now() - t0;
    assert.ok(took >= 140 && took < 2000, `round took ${took} ms`);
    const p0 = performance.now();
    const r = h.ready();
    assert.ok(performance.now() - p0 < 20);
    assert.equal(r.status, 503);
    assert.equal(r.body.status, 'fail');
    assert.match(String(r.body.output), /stuck/);
    const stuck = entry(r.body, 'stuck:responseTime');
    assert.equal(stuck.status, 'fail');
    assert.match(String(stuck.output), /timed out after 150 ms/);
    // the optional failing check reports warn and does not gate readiness by itself
    assert.equal(entry(r.body, 'extra:responseTime').status, 'warn');
    // the still-pending run is not duplicated by the next round, which fails at once
    await h.runOnce();
    assert.equal(calls, 1);
    const again = h.results().get('stuck');
    assert.equal(again?.consecutiveFailures, 2);
    assert.match(String(again?.message), /previous run still pending/);
  });

  test('an optional failing check makes the status warn but keeps readiness 200', async () => {
    const h = createHealth(opts);
    h.add(check('dep', true, async () => ({ ok: true })));
    h.add(
      check('opt', false, async () => {
        throw new Error('boom');
      }),
    );
    h.markStarted();
    await h.runOnce();
    const r = h.ready();
    assert.equal(r.status, 200);
    assert.equal(r.body.status, 'warn');
    assert.equal(entry(r.body, 'opt:responseTime').output, 'boom');
  });

  test('deep: per-check latency and detail for real Redis and PostgreSQL, plus process figures', async () => {
    const redis = createRedis(REDIS_URL);
    const pool = new pg.Pool({ connectionString: DATABASE_URL, max: 2 });
    cleanups.push(
      () => redis.quit(),
      () => pool.end(),
    );
    const h = createHealth({ ...opts, timeoutMs: 3000 });
    h.add(redisCheck(redis));
    h.add(postgresCheck(pool));
    h.start();
    cleanups.push(() => h.stop());
    h.markStarted();
    await h.runOnce();
    const d = h.deep();
    assert.equal(d.status, 200, JSON.stringify(d.body));
    const r = entry(d.body, 'redis:responseTime');
    assert.equal(r.status, 'pass');
    assert.equal(typeof r.latency_ms, 'number');
    assert.ok((r.latency_ms as number) >= 0 && (r.latency_ms as number) < 3000);
    assert.equal(r.observedUnit, 'ms');
    assert.deepEqual(r.detail, { connection: 'ready' });
    const p = entry(d.body, 'postgres:responseTime');
    assert.equal(p.status, 'pass');
    assert.equal(typeof p.latency_ms, 'number');
    const usage = (p.detail as { pool: Record<string, number> }).pool;
    assert.equal(usage.total, 1);
    assert.equal(usage.idle, 1);
    assert.equal(usage.waiting, 0);
    const proc = d.body.process as {
      event_loop_delay_p99_ms: number;
      heap_used_bytes: number;
      rss_bytes: number;
    };
    assert.equal(typeof proc.event_loop_delay_p99_ms, 'number');
    assert.ok(proc.heap_used_bytes > 0 && proc.rss_bytes > proc.heap_used_bytes / 2);
    assert.equal(d.body.instanceId, 'svc-1');
    assert.equal(d.body.version, '9.9.9');
    assert.equal(typeof d.body.uptime_s, 'number');
    assert.ok(entry(d.body, 'eventLoop:delayP99'));
  });

  test('eventLoopCheck fails when the loop was blocked longer than the threshold', async () => {
    const c = eventLoopCheck({ maxP99Ms: 50 });
    await c.run(AbortSignal.timeout(1000));
    await new Promise((r) => setTimeout(r, 50));
    const until = Date.now() + 250;
    while (Date.now() < until) {
      // block the event loop
    }
    await new Promise((r) => setTimeout(r, 30));
    const res = await c.run(AbortSignal.timeout(1000));
    assert.equal(res.ok, false, JSON.stringify(res));
    assert.match(String(res.message), /event-loop delay p99/);
    assert.equal(c.required, false);
  });

  test('healthRoutes answer as application/health+json, uncached', async () => {
    const h = createHealth(opts);
    const app = new Hono().route('/', healthRoutes(h));
    const res = await app.request('/health/ready');
    assert.equal(res.status, 503);
    assert.equal(res.headers.get('content-type'), 'application/health+json');
    assert.equal(res.headers.get('cache-control'), 'no-store');
    assert.equal(((await res.json()) as { status: string }).status, 'fail');
    for (const p of ['live', 'startup', 'deep']) {
      assert.notEqual((await app.request(`/health/${p}`)).status, 404, p);
    }
  });
});

describe('served probes through a Redis outage', () => {
  test('/health/ready -> 503 within one check interval of Redis dying, 200 after it returns; live stays 200', async (t) => {
    const pr: PrivateRedis = await startPrivateRedis();
    cleanups.push(() => pr.stop());
    const intervalMs = 500;
    const shoal = createShoal({
      env: {
        REDIS_URL: pr.url,
        SHOAL_HEALTH_INTERVAL: `${intervalMs}ms`,
        SHOAL_HEALTH_TIMEOUT: '300ms',
        SHOAL_DRAIN_DELAY: '0',
        SHOAL_SHUTDOWN_TIMEOUT: '5s',
        LOG_LEVEL: 'silent',
        HOST: '127.0.0.1',
        PORT: '0',
        SHOAL_SERVICE: 'probe-test',
      },
      version: '1.2.3',
      exit: () => {},
    });
    shoal.redis();
    const app = new Hono();
    app.get('/', (c) => c.text('ok'));
    const { port } = await serve(app, shoal, { signals: false });
    cleanups.push(() => shoal.shutdown.shutdown('test over'));
    const base = `http://127.0.0.1:${port}`;
    const probe = async (p: string) => {
      const res = await fetch(`${base}/health/${p}`);
      return { status: res.status, body: (await res.json()) as Record<string, unknown> };
    };
    const waitFor = async (p: string, status: number, limitMs: number) => {
      const t0 = Date.now();
      for (;;) {
        const r = await probe(p);
        if (r.status === status) return { ...r, ms: Date.now() - t0 };
        if (Date.now() - t0 > limitMs) assert.fail(`${p} still ${r.status} after ${limitMs} ms`);
        await new Promise((res) => setTimeout(res, 20));
      }
    };

    // live is polled throughout the test
    const liveStatuses: number[] = [];
    let polling = true;
    const livePoller = (async () => {
      while (polling) {
        liveStatuses.push((await probe('live')).status);
        await new Promise((r) => setTimeout(r, 50));
      }
    })();

    await waitFor('ready', 200, 5000);
    const deep = await probe('deep');
    const r = entry(deep.body, 'redis:responseTime');
    assert.equal(r.status, 'pass');
    assert.equal(typeof r.latency_ms, 'number');
    assert.equal(deep.body.version, '1.2.3');

    await pr.kill();
    const down = await waitFor('ready', 503, 10_000);
    t.diagnostic(`ready went 503 ${down.ms} ms after Redis died (interval ${intervalMs} ms)`);
    // one interval, plus the check's own timeout, plus generous slack for a loaded machine
    assert.ok(down.ms <= intervalMs + 300 + 1500, `took ${down.ms} ms`);
    assert.match(String(down.body.output), /redis/);
    const deepDown = await probe('deep');
    assert.equal(deepDown.status, 503);
    assert.equal(entry(deepDown.body, 'redis:responseTime').status, 'fail');
    assert.ok(entry(deepDown.body, 'redis:responseTime').output);

    await pr.start();
    const up = await waitFor('ready', 200, 10_000);
    t.diagnostic(`ready back to 200 ${up.ms} ms after Redis returned`);

    polling = false;
    await livePoller;
    assert.ok(liveStatuses.length > 10);
    assert.deepEqual(
      liveStatuses.filter((s) => s !== 200),
      [],
    );
    // /metrics is mounted too
    const metrics = await fetch(`${base}/metrics`);
    assert.equal(metrics.status, 200);
    assert.match(await metrics.text(), /probe-test/);
  });
});
