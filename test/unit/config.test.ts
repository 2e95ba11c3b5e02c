import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
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

test('docs/config.md documents every variable loadConfig reads, in a table row of its own', () => {
  const doc = readFileSync(new URL('../../docs/config.md', import.meta.url), 'utf8');
  const missing = CONFIG_VARIABLES.filter((v) => !new RegExp(`^\\| \`${v}\` +\\|`, 'm').test(doc));
  assert.deepEqual(missing, [], `variables without a row in docs/config.md: ${missing.join(', ')}`);
});

test('every REDIS_URL example in docs/config.md parses', () => {
  const doc = readFileSync(new URL('../../docs/config.md', import.meta.url), 'utf8');
  const examples = [...doc.matchAll(/^REDIS_URL=(\S+)$/gm)].map((m) => m[1]!);
  assert.ok(examples.length >= 5, 'single, TLS, Sentinel and Cluster examples are there');
  for (const url of examples) {
    const parsed = parseRedisUrl(url);
    assert.ok(!('error' in parsed), `${url}: ${'error' in parsed ? parsed.error : ''}`);
    assert.equal(loadConfig({ REDIS_URL: url }).redisUrl, url);
  }
  const kinds = new Set(examples.map((u) => (parseRedisUrl(u) as { kind: string; tls: boolean }).kind));
  assert.deepEqual([...kinds].sort(), ['cluster', 'sentinel', 'single']);
});

test('pool bounds: DB_POOL_MIN above DB_POOL_MAX is named', () => {
  assert.throws(
    () => loadConfig({ DB_POOL_MIN: '20', DB_POOL_MAX: '10' }),
    /DB_POOL_MIN: expected a value <= DB_POOL_MAX \(10\), got 20/,
  );
  const c = loadConfig({ DB_POOL_IDLE: '30s', DB_POOL_LIFETIME: '30m', DB_CONNECT_TIMEOUT: '2s' });
  assert.deepEqual(c.db, {
    poolMin: 0,
    poolMax: 10,
    idleMs: 30_000,
    lifetimeMs: 1_800_000,
    connectTimeoutMs: 2000,
  });
});
