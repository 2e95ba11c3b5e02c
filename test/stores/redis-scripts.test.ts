import assert from 'node:assert/strict';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, test } from 'node:test';
import { Redis } from 'ioredis';
import { isShoalError } from '../../src/errors.js';
import { createRedis, type RedisClient, waitForRedis } from '../../src/stores/redis/client.js';
import { loadLuaFile, luaScript, runScript } from '../../src/stores/redis/scripts.js';
import { type PrivateRedis, startPrivateRedis } from '../helpers/private-redis.js';

let server: PrivateRedis;
let client: RedisClient;
let admin: Redis;
let dir: string;

before(async () => {
  server = await startPrivateRedis();
  client = createRedis(server.url, { connectionName: 'scripts-test', onError: () => {} });
  await waitForRedis(client, 5000);
  admin = new Redis(server.url);
  admin.on('error', () => {});
  dir = mkdtempSync(join(tmpdir(), 'shoal-lua-'));
});
after(async () => {
  client?.disconnect();
  admin?.disconnect();
  await server?.stop();
  if (dir) rmSync(dir, { recursive: true, force: true });
});

/** calls of EVAL and EVALSHA seen by the server (INFO commandstats). */
async function evalCalls(): Promise<{ eval: number; evalsha: number }> {
  const info = await admin.info('commandstats');
  const calls = (cmd: string) => Number(new RegExp(`cmdstat_${cmd}:calls=(\\d+)`).exec(info)?.[1] ?? 0);
  return { eval: calls('eval'), evalsha: calls('evalsha') };
}

test('scripts run by SHA; after SCRIPT FLUSH the next call reloads transparently and SHA calls resume', async () => {
  const incr = luaScript('incr-by-1', "return redis.call('INCRBY', KEYS[1], ARGV[1])");
  await admin.config('RESETSTAT');
  assert.equal(await runScript(client, incr, ['{s}:n'], [2]), 2);
  assert.equal(await runScript(client, incr, ['{s}:n'], [3]), 5);
  assert.equal(await runScript(client, incr, ['{s}:n'], [5]), 10);
  const warm = await evalCalls();
  assert.equal(warm.eval, 1, 'the source is sent once (first call on a fresh server)');
  assert.equal(warm.evalsha, 3, 'every call tries the SHA first');

  await admin.script('FLUSH');
  assert.deepEqual(await admin.script('EXISTS', incr.sha), [0]);
  assert.equal(await runScript(client, incr, ['{s}:n'], [1]), 11);
  assert.deepEqual(await admin.script('EXISTS', incr.sha), [1], 'reloaded into the script cache');
  assert.equal(await runScript(client, incr, ['{s}:n'], [1]), 12);
  const after = await evalCalls();
  assert.equal(after.eval, 2, 'exactly one reload after the flush');
  assert.equal(after.evalsha, 5);
});

test('a script that survives a server restart is reloaded too', async () => {
  const echo = luaScript('echo-0', 'return ARGV[1]');
  assert.equal(await runScript(client, echo, [], ['a']), 'a');
  await server.kill();
  await server.start();
  await waitForRedis(client, 5000);
  assert.equal(await runScript(client, echo, [], ['b']), 'b');
});

test('loadLuaFile reads a file once, names it after the file and hashes it', async () => {
  const path = join(dir, 'double-1.lua');
  writeFileSync(path, "-- KEYS[1]: a counter\nreturn redis.call('INCRBY', KEYS[1], 2)\n");
  const s = loadLuaFile(new URL(`file://${dir}/`), './double-1.lua');
  assert.equal(s.name, 'double-1');
  assert.match(s.sha, /^[0-9a-f]{40}$/);
  assert.equal(s.sha, await admin.script('LOAD', s.source));
  writeFileSync(path, 'return 0');
  assert.equal(await runScript(client, s, ['{d}:n'], []), 2, 'the loaded text is used, not re-read');
});

test('a script error after a reload is a store.script_failed ShoalError naming the script', async () => {
  const bad = luaScript('bad-0', "return redis.call('NOPE')");
  await assert.rejects(runScript(client, bad, [], []), (err: unknown) => {
    assert.ok(isShoalError(err, 'store.script_failed'));
    assert.match(err.message, /Lua script bad-0 failed/);
    return true;
  });
});

test('script errors are store.script_failed on the SHA path too; connection errors pass through', async () => {
  const wrongType = luaScript(
    'wrongtype-1',
    "redis.call('SET', KEYS[1], 'x'); return redis.call('LPUSH', KEYS[1], 'y')",
  );
  for (let i = 0; i < 2; i++) {
    // First round trip reloads (EVAL), the second runs by SHA: both report the same way.
    await assert.rejects(runScript(client, wrongType, ['{w}:k'], []), (err: unknown) => {
      assert.ok(isShoalError(err, 'store.script_failed'), String(err));
      assert.match(err.message, /Lua script wrongtype-1 failed: .*WRONGTYPE/);
      return true;
    });
  }
  const offline = createRedis(`redis://127.0.0.1:${server.port}`, {
    onError: () => {},
    redis: { lazyConnect: true, retryStrategy: () => null },
  });
  try {
    await assert.rejects(runScript(offline, wrongType, ['{w}:k'], []), (err: unknown) => {
      assert.equal(isShoalError(err), false, 'not reported as a script failure');
      return true;
    });
  } finally {
    offline.disconnect();
  }
});
