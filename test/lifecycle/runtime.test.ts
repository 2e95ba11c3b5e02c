// The runtime object: config errors, lazy store wiring into health/metrics/shutdown, runMain.
import assert from 'node:assert/strict';
import { Writable } from 'node:stream';
import { test } from 'node:test';
import { Hono } from 'hono';
import { pino } from 'pino';
import { instrument, serve } from '../../src/adapters/hono/serve.js';
import { isShoalError } from '../../src/errors.js';
import { createShoal, EXIT_CONFIG, runMain } from '../../src/runtime.js';
import { DATABASE_URL, REDIS_URL } from '../helpers/stores.js';

const quiet = () => pino({ level: 'silent' });

test('createShoal throws the one config.invalid error naming every bad variable', () => {
  assert.throws(
    () => createShoal({ env: { PORT: '-1', DB_POOL_MAX: 'many', SHOAL_HEALTH_INTERVAL: 'often' } }),
    (err: unknown) => {
      assert.ok(isShoalError(err, 'config.invalid'));
      assert.deepEqual([...((err.detail?.variables as string[]) ?? [])].sort(), [
        'DB_POOL_MAX',
        'PORT',
        'SHOAL_HEALTH_INTERVAL',
      ]);
      return true;
    },
  );
});

test('runMain: config error -> its message only and exit 78; other errors -> stack and exit 1', async () => {
  let out = '';
  const stderr = { write: (s: string) => (out += s) };
  const codes: number[] = [];
  await runMain(() => createShoal({ env: { LOG_LEVEL: 'chatty', SHOAL_REPLICAS: 'x' } }), {
    stderr,
    exit: (c) => codes.push(c),
  });
  assert.deepEqual(codes, [EXIT_CONFIG]);
  assert.match(out, /^Invalid configuration \(2 variables\):\n {2}SHOAL_REPLICAS: .*\n {2}LOG_LEVEL: .*\n$/);
  out = '';
  await runMain(
    async () => {
      throw new Error('port in use');
    },
    { stderr, exit: (c) => codes.push(c) },
  );
  assert.deepEqual(codes, [EXIT_CONFIG, 1]);
  assert.match(out, /^startup failed: Error: port in use/);
});

test('redis() and pg() are lazy singletons wired into health, metrics and shutdown', async () => {
  const codes: number[] = [];
  const shoal = createShoal({
    env: { REDIS_URL, DATABASE_URL, SHOAL_SERVICE: 'rt-test', SHOAL_DRAIN_DELAY: '0', DB_POOL_MAX: '3' },
    logger: quiet(),
    exit: (c) => codes.push(c),
  });
  const pool = shoal.pg();
  const redis = shoal.redis();
  assert.equal(shoal.pg(), pool);
  assert.equal(shoal.redis(), redis);
  assert.equal(pool.options.max, 3);
  shoal.health.markStarted();
  await shoal.health.runOnce();
  const ready = shoal.health.ready();
  assert.equal(ready.status, 200, JSON.stringify(ready.body));
  assert.deepEqual([...shoal.health.results().keys()].sort(), ['postgres', 'redis']);
  const text = await shoal.metrics.render();
  assert.match(text, /service="rt-test"/);
  assert.equal(await shoal.shutdown.shutdown('test'), 0);
  assert.deepEqual(codes, [0]);
  assert.equal(redis.status, 'end');
  assert.equal((pool as unknown as { ended: boolean }).ended, true);
});

test('redis() without REDIS_URL throws config.invalid naming it', () => {
  const shoal = createShoal({ env: {}, logger: quiet() });
  assert.throws(() => shoal.redis(), /REDIS_URL/);
  assert.throws(() => shoal.pg(), /DATABASE_URL/);
});

test('serve without instrument() warns that existing routes are not observed, still serves probes', async () => {
  const lines: Record<string, unknown>[] = [];
  const stream = new Writable({
    write(chunk: Buffer, _e, cb) {
      for (const l of chunk.toString().split('\n')) if (l.trim()) lines.push(JSON.parse(l));
      cb();
    },
  });
  const shoal = createShoal({
    env: { HOST: '127.0.0.1', PORT: '0', SHOAL_DRAIN_DELAY: '0', SHOAL_KEEPALIVE_TIMEOUT: '70s' },
    logger: pino({ level: 'info' }, stream),
    exit: () => {},
  });
  const app = new Hono();
  app.get('/', (c) => c.text('hi'));
  const { server, port } = await serve(app, shoal, { signals: false });
  try {
    assert.ok(lines.some((l) => String(l.msg).includes('instrument(app, runtime)')));
    assert.equal(server.keepAliveTimeout, 70_000);
    assert.equal(server.headersTimeout, 66_000);
    const live = await fetch(`http://127.0.0.1:${port}/health/live`);
    assert.equal(live.status, 200);
    assert.equal(live.headers.get('content-type'), 'application/health+json');
    assert.equal((await fetch(`http://127.0.0.1:${port}/`)).status, 200);
  } finally {
    await shoal.shutdown.shutdown('test');
  }
});

test('instrument() before routes: requests get a request id and the instance header', async () => {
  const shoal = createShoal({
    env: { HOST: '127.0.0.1', PORT: '0', SHOAL_DRAIN_DELAY: '0', SHOAL_INSTANCE_ID: 'inst-7' },
    logger: quiet(),
    exit: () => {},
  });
  const app = new Hono();
  instrument(app, shoal, { instanceHeader: true });
  app.get('/x', (c) => c.text('x'));
  const { port } = await serve(app, shoal, { signals: false });
  try {
    const res = await fetch(`http://127.0.0.1:${port}/x`);
    assert.equal(res.status, 200);
    assert.equal(res.headers.get('x-instance-id'), 'inst-7');
    assert.ok(res.headers.get('x-request-id'));
    const deep = (await (await fetch(`http://127.0.0.1:${port}/health/deep`)).json()) as Record<
      string,
      unknown
    >;
    assert.equal(deep.instanceId, 'inst-7');
  } finally {
    await shoal.shutdown.shutdown('test');
  }
});
