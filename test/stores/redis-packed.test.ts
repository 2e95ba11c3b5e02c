import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { once } from 'node:events';
import { type AddressInfo, createServer } from 'node:net';
import { after, test } from 'node:test';
import { Redis } from 'ioredis';
import { evalPacked, evalTemplate, packedTemplate, sendTemplate } from '../../src/stores/redis/packed.js';
import { luaScript } from '../../src/stores/redis/scripts.js';
import { REDIS_URL, testPrefix } from '../helpers/stores.js';

const prefix = testPrefix('packed');
const clients: Redis[] = [];
after(() => {
  for (const c of clients) c.disconnect();
});

function client(keyPrefix?: string): Redis {
  const c = new Redis(REDIS_URL, keyPrefix ? { keyPrefix } : {});
  clients.push(c);
  return c;
}

// A source no other test has loaded, so the first call meets NOSCRIPT and must fall back to EVAL.
const echo = () =>
  luaScript(
    'echo-n',
    `-- ${randomBytes(8).toString('hex')}\nreturn KEYS[1] .. '|' .. #KEYS .. '|' .. ARGV[1] .. '|' .. (ARGV[2] or '')`,
  );

test('evalPacked sends binary bytes unchanged, keys as UTF-8, and loads the script on NOSCRIPT', async () => {
  const redis = client();
  const script = echo();
  assert.equal(await redis.script('EXISTS', script.sha).then((r) => (r as number[])[0]), 0);
  // every byte value, including CR/LF and bytes that are not valid UTF-8
  const packed = Uint8Array.from({ length: 256 }, (_, i) => i);
  const key = `${prefix}{k}zoë-ключ`;
  for (let round = 0; round < 2; round++) {
    const reply = await evalPacked(redis, script, [key, `${prefix}{k}2`], packed, ['tail']);
    assert.ok(Buffer.isBuffer(reply));
    const expected = Buffer.concat([Buffer.from(`${key}|2|`), packed, Buffer.from('|tail')]);
    assert.deepEqual(reply, expected);
  }
  assert.equal(await redis.script('EXISTS', script.sha).then((r) => (r as number[])[0]), 1);
});

test('evalPacked sends only packedLength bytes and copies them: a reused buffer cannot change a NOSCRIPT retry', async () => {
  const redis = client();
  const script = echo();
  const buf = new Uint8Array(64).fill(0x7a);
  buf.set([1, 13, 10, 2, 255]);
  // Redis does not know the script: the EVAL retry goes out after the caller has reused its buffer
  const pending = evalPacked(redis, script, [`${prefix}{k}reuse`], buf, ['ünï', '7'], 5);
  buf.fill(0x30);
  const reply = await pending;
  assert.deepEqual(
    reply,
    Buffer.concat([
      Buffer.from(`${prefix}{k}reuse|1|`),
      Buffer.from([1, 13, 10, 2, 255]),
      Buffer.from('|ünï'),
    ]),
  );
  assert.equal(await redis.script('EXISTS', script.sha).then((r) => (r as number[])[0]), 1);
});

test('evalPacked encodes two-digit key counts and multi-byte text arguments exactly', async () => {
  const redis = client();
  const script = luaScript(
    'echo-all',
    `-- ${randomBytes(8).toString('hex')}\nreturn table.concat(KEYS, ',') .. '|' .. table.concat(ARGV, ',')`,
  );
  // two- and three-byte characters, a surrogate pair (four bytes) and a lone surrogate (written
  // as U+FFFD, three bytes), in short and long strings
  const keys = Array.from({ length: 12 }, (_, i) => `${prefix}{k}${'é'.repeat(i)}€😀${i}`);
  keys.push(`${prefix}{k}lone\ud800`, `${prefix}{k}${'ж'.repeat(40)}`);
  const packed = new Uint8Array(1000).fill(0x41);
  const reply = await evalPacked(redis, script, keys, packed, ['ü', '66000', '', '😀\udc00']);
  assert.deepEqual(reply, Buffer.from(`${keys.join(',')}|${'A'.repeat(1000)},ü,66000,,😀\udc00`));
  // a small packed argument with CR, LF and a non-UTF-8 byte
  const small = await evalPacked(redis, script, [keys[0]!], Uint8Array.from([0, 13, 10, 255]), ['x']);
  assert.deepEqual(
    small,
    Buffer.concat([Buffer.from(`${keys[0]}|`), Buffer.from([0, 13, 10, 255]), Buffer.from(',x')]),
  );
});

test('evalPacked applies the client keyPrefix like any ioredis command, and passes Lua errors through', async () => {
  const redis = client(`${prefix}pre:`);
  const reply = await evalPacked(redis, echo(), ['{k}a'], new Uint8Array([1, 2]), []);
  assert.equal(reply.toString('latin1'), `${prefix}pre:{k}a|1|\x01\x02|`);
  const bad = luaScript('bad-0', `-- ${randomBytes(8).toString('hex')}\nreturn redis.call('NOPE')`);
  await assert.rejects(evalPacked(redis, bad, [], new Uint8Array(0), []), (e: Error) => {
    assert.equal(e.name, 'ReplyError');
    assert.match(e.message, /Unknown Redis command|NOPE/i);
    return true;
  });
});

test('evalPacked honours the client commandTimeout: a call nobody answers is rejected, not left hanging', async () => {
  // A server that accepts connections and never answers.
  const silent = createServer((socket) => socket.on('data', () => {}));
  silent.listen(0, '127.0.0.1');
  await once(silent, 'listening');
  const port = (silent.address() as AddressInfo).port;
  const redis = new Redis({
    host: '127.0.0.1',
    port,
    enableReadyCheck: false,
    commandTimeout: 150,
    maxRetriesPerRequest: 0,
  });
  clients.push(redis);
  try {
    const started = performance.now();
    await assert.rejects(evalPacked(redis, echo(), ['{k}a'], new Uint8Array([1]), []), /Command timed out/);
    const waited = performance.now() - started;
    assert.ok(waited >= 140 && waited < 2000, `rejected after ${waited} ms`);
  } finally {
    redis.disconnect();
    silent.close();
  }
});

test('a packed template sends what evalPacked sends, for any keys, across NOSCRIPT and a keyPrefix', async () => {
  const redis = client();
  const script = luaScript(
    'echo-template',
    `-- ${randomBytes(8).toString('hex')}\nreturn table.concat(KEYS, ',') .. '|' .. ARGV[1] .. '|' .. table.concat(ARGV, ',', 2)`,
  );
  const buf = new Uint8Array(40).fill(0x61);
  buf.set([0, 13, 10, 255]);
  const t = packedTemplate(script, 2, buf, 9, ['ü', '66000']);
  // the template holds its own copy of the packed bytes
  buf.fill(0x30);
  const packed = Buffer.from([0, 13, 10, 255, 0x61, 0x61, 0x61, 0x61, 0x61]);
  const keySets = [
    [`${prefix}{k}a`, `${prefix}{k}b`],
    [`${prefix}{k}${'é'.repeat(30)}`, `${prefix}{k}${'x'.repeat(100)}`],
    [`${prefix}{k}`, `${prefix}{k}😀`],
  ];
  // the first call meets NOSCRIPT: the retry is sent with EVAL from the template's bytes
  for (const keys of keySets) {
    const viaTemplate = await evalTemplate(redis, t, keys);
    const viaPacked = await evalPacked(redis, script, keys, packed, ['ü', '66000']);
    assert.deepEqual(viaTemplate, viaPacked);
    assert.deepEqual(
      viaTemplate,
      Buffer.concat([Buffer.from(`${keys.join(',')}|`), packed, Buffer.from('|ü,66000')]),
    );
  }
  assert.throws(() => evalTemplate(redis, t, ['one']), /1 keys, template has 2/);
  const prefixed = client(`${prefix}pre:`);
  const reply = await evalTemplate(prefixed, t, ['{k}a', '{k}b']);
  assert.equal(reply.subarray(0, reply.indexOf('|')).toString(), `${prefix}pre:{k}a,${prefix}pre:{k}b`);
});

test('sendTemplate tells its handler the reply or the error once, across NOSCRIPT, with no unhandled rejection', async () => {
  const redis = client();
  const unhandled: unknown[] = [];
  const onUnhandled = (e: unknown) => unhandled.push(e);
  process.on('unhandledRejection', onUnhandled);
  try {
    const outcome = (t: ReturnType<typeof packedTemplate>, keys: string[]) =>
      new Promise<{ reply?: Buffer; error?: Error; calls: number }>((resolve) => {
        const seen = { calls: 0 } as { reply?: Buffer; error?: Error; calls: number };
        sendTemplate(redis, t, keys, {
          reply(v) {
            seen.calls++;
            seen.reply = v;
            // a second outcome would be counted before this settles
            setTimeout(() => resolve(seen), 20);
          },
          error(e) {
            seen.calls++;
            seen.error = e;
            setTimeout(() => resolve(seen), 20);
          },
        });
      });
    // unknown to Redis: the first call meets NOSCRIPT and is answered through EVAL
    const script = echo();
    const t = packedTemplate(script, 1, Uint8Array.from([7, 13, 10]), 3, ['x']);
    for (let round = 0; round < 2; round++) {
      const got = await outcome(t, [`${prefix}{k}h`]);
      assert.equal(got.calls, 1);
      assert.deepEqual(got.reply, Buffer.from(`${prefix}{k}h|1|\x07\r\n|x`, 'latin1'));
    }
    // a Lua error, first through NOSCRIPT and then by SHA
    const bad = luaScript('bad-template', `-- ${randomBytes(8).toString('hex')}\nreturn redis.call('NOPE')`);
    const tb = packedTemplate(bad, 0, new Uint8Array(0), 0, []);
    for (let round = 0; round < 2; round++) {
      const got = await outcome(tb, []);
      assert.equal(got.calls, 1);
      assert.equal(got.reply, undefined);
      assert.match(String(got.error?.message), /Unknown Redis command|NOPE/i);
    }
    await new Promise((r) => setTimeout(r, 50));
    assert.deepEqual(unhandled, []);
  } finally {
    process.off('unhandledRejection', onUnhandled);
  }
});
