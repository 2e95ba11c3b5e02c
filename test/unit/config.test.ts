import assert from 'node:assert/strict';
import { test } from 'node:test';
import { CONFIG_VARIABLES, loadConfig, parseDuration } from '../../src/config/index.js';
import { isShoalError } from '../../src/errors.js';
import { parseRedisUrl } from '../../src/stores/redis/url.js';

test('defaults load from an empty environment', () => {
  const c = loadConfig({});
  assert.equal(c.replicas, 1);
  assert.equal(c.shutdown.timeoutMs, 30_000);
  assert.ok(c.shutdown.keepAliveTimeoutMs > 60_000, 'keep-alive above common balancer idle timeouts');
  assert.ok(c.shutdown.headersTimeoutMs > c.shutdown.keepAliveTimeoutMs);
  assert.match(c.instanceId, /^[\w.-]+$/);
});

test('every bad variable is named in one error', () => {
  try {
    loadConfig({
      SHOAL_REPLICAS: 'three',
      REDIS_URL: 'localhost:6379',
      DATABASE_URL: 'mysql://x',
      LOG_LEVEL: 'loud',
      SHOAL_DRAIN_DELAY: '5 parsecs',
      PORT: '70000',
    });
    assert.fail('expected an error');
  } catch (err) {
    assert.ok(isShoalError(err, 'config.invalid'));
    for (const v of [
      'SHOAL_REPLICAS',
      'REDIS_URL',
      'DATABASE_URL',
      'LOG_LEVEL',
      'SHOAL_DRAIN_DELAY',
      'PORT',
    ]) {
      assert.match(err.message, new RegExp(`${v}: expected`), v);
    }
    assert.match(err.message, /SHOAL_REPLICAS: expected an integer from 1 to 10000, got "three"/);
    assert.match(err.message, /6 variables/);
  }
});

test('URL values are never echoed in config errors (they may hold passwords)', () => {
  assert.throws(
    () => loadConfig({ DATABASE_URL: 'mysql://root:hunter2@db' }),
    (err: Error) => !err.message.includes('hunter2') && /DATABASE_URL/.test(err.message),
  );
});

test('durations accept units', () => {
  assert.equal(parseDuration('250'), 250);
  assert.equal(parseDuration('1.5s'), 1500);
  assert.equal(parseDuration('2m'), 120_000);
  assert.equal(parseDuration('soon'), undefined);
});

test('redis URL forms parse', () => {
  assert.deepEqual(parseRedisUrl('redis://:pw@10.0.0.1:6380/2'), {
    kind: 'single',
    tls: false,
    host: '10.0.0.1',
    port: 6380,
    db: 2,
    username: undefined,
    password: 'pw',
  });
  const s = parseRedisUrl('redis-sentinel://h1:26379,h2/mymaster?sentinelPassword=x');
  assert.ok(!('error' in s) && s.kind === 'sentinel');
  assert.deepEqual(s.sentinels, [
    { host: 'h1', port: 26379 },
    { host: 'h2', port: 26379 },
  ]);
  assert.equal(s.sentinelPassword, 'x');
  const c = parseRedisUrl('redis-cluster://127.0.0.1:7000,127.0.0.1:7001');
  assert.ok(!('error' in c) && c.kind === 'cluster' && c.nodes.length === 2);
  assert.ok('error' in parseRedisUrl('redis-sentinel://h1:26379'));
  const t = parseRedisUrl('rediss://h');
  assert.ok(!('error' in t) && t.kind === 'single' && t.tls);
});

test('the documented variable list is complete', () => {
  assert.ok(CONFIG_VARIABLES.includes('DB_POOL_MAX'));
  assert.ok(CONFIG_VARIABLES.includes('SHOAL_INSTANCE_ID'));
});
