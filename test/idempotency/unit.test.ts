// Key parsing and fingerprints: pure functions, no stores.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { canonicalJson, requestFingerprint } from '../../src/idempotency/fingerprint.js';
import { parseIdempotencyKey } from '../../src/idempotency/key.js';

test('Idempotency-Key: sf-string of 1..255 printable ASCII characters', () => {
  assert.deepEqual(parseIdempotencyKey('"abc-123"'), { ok: true, key: 'abc-123' });
  assert.deepEqual(parseIdempotencyKey('  "a\\"b\\\\c"  '), { ok: true, key: 'a"b\\c' });
  assert.equal(parseIdempotencyKey(`"${'k'.repeat(255)}"`).ok, true);
  const long = parseIdempotencyKey(`"${'k'.repeat(256)}"`);
  assert.equal(long.ok, false);
  assert.equal(!long.ok && long.reason, 'malformed');
  for (const bad of ['abc', '"abc', '"abc" x', '""', '"a\\nb"', '"caf\u00e9"', '"a";p=1', '"\t"']) {
    const r = parseIdempotencyKey(bad);
    assert.equal(r.ok === false && r.reason, 'malformed', bad);
  }
  for (const missing of [undefined, null, '', '   ']) {
    const r = parseIdempotencyKey(missing);
    assert.equal(r.ok === false && r.reason, 'missing');
  }
});

test('canonical JSON: key order, whitespace and number spelling do not matter; big numbers stay exact', () => {
  assert.equal(
    canonicalJson('{ "b": 1, "a": [1.0, "x", {"z": null, "y": true}] }'),
    '{"a":[1,"x",{"y":true,"z":null}],"b":1}',
  );
  assert.equal(canonicalJson('{"n": 1e2}'), canonicalJson('{"n":100}'));
  assert.equal(canonicalJson('"\\u0041"'), canonicalJson('"A"'));
  assert.notEqual(canonicalJson('[12345678901234567890]'), canonicalJson('[12345678901234567891]'));
  assert.notEqual(canonicalJson('{"a":1}'), canonicalJson('{"a":"1"}'));
  assert.equal(canonicalJson('{"a":1,"a":2}'), '{"a":2}');
  for (const bad of ['{', '{"a":}', '[1,]', '01', 'nul', '{"a":1} x', '"\n"']) {
    assert.equal(canonicalJson(bad), undefined, bad);
  }
});

test('canonical JSON: include and exclude fields', () => {
  const text = '{"sku":"a","qty":2,"meta":{"trace":"t1","note":"n"},"sentAt":"now"}';
  assert.equal(
    canonicalJson(text, { exclude: ['sentAt', 'meta.trace'] }),
    '{"meta":{"note":"n"},"qty":2,"sku":"a"}',
  );
  assert.equal(canonicalJson(text, { include: ['sku', 'meta.note'] }), '{"meta":{"note":"n"},"sku":"a"}');
});

test('fingerprint: method, route and canonical body', () => {
  const base = { method: 'POST', route: '/orders', contentType: 'application/json' };
  const f = (body: string, over: Partial<typeof base> = {}) => requestFingerprint({ ...base, ...over, body });
  assert.equal(f('{"a":1,"b":2}'), f('{\n  "b": 2,\n  "a": 1\n}'));
  assert.notEqual(f('{"a":1,"b":2}'), f('{"a":1,"b":3}'));
  assert.notEqual(f('{"a":1}'), f('{"a":1}', { route: '/orders?x=1' }));
  assert.notEqual(f('{"a":1}'), f('{"a":1}', { method: 'PATCH' }));
  // Non-JSON bodies are compared byte for byte.
  assert.notEqual(
    f('a=1&b=2', { contentType: 'application/x-www-form-urlencoded' }),
    f('b=2&a=1', { contentType: 'application/x-www-form-urlencoded' }),
  );
  assert.equal(
    requestFingerprint({ ...base, body: new TextEncoder().encode('{"a":1}') }),
    requestFingerprint({ ...base, body: '{ "a" : 1 }' }),
  );
});

test('canonical JSON: the JSON.parse fast path and the careful parser agree byte for byte', () => {
  // Excluding a path that never occurs forces the careful parser without changing the tree.
  const careful = (t: string) => canonicalJson(t, { exclude: ['\u0000never'] });
  const deep = (n: number) => `${'['.repeat(n)}1${']'.repeat(n)}`;
  const inputs = [
    '{"b":1,"a":[1.0,"x",{"z":null,"y":true,"w":false}]}',
    '[-0, 0.1, 1e21, 1E+2, 1.5e-7, 123456789012345, 0.000001, 1e-7, -12.50]',
    '[1e400, -1e400]',
    '[12345678901234567890, 1234567890.123456]',
    '{"s":"digits 12345678901234567 inside a string","n":3}',
    '{"__proto__":{"x":1},"constructor":2,"a":"\\u00e9\\ud800\\n\\"q\\""}',
    '{"a":1,"a":{"c":2,"b":1}}',
    '{"\u00e9":1,"e":2,"E":3,"":4,"10":5,"9":6}',
    '  [ ] ',
    '{}',
    '"just a string"',
    'true',
    deep(256),
    deep(257),
    '[1,]',
    '{"a":01}',
  ];
  for (const t of inputs) assert.equal(canonicalJson(t), careful(t), t.slice(0, 40));
  assert.equal(canonicalJson(deep(257)), undefined);
  assert.notEqual(canonicalJson('[1e400]'), canonicalJson('[2e400]'));
  assert.equal(canonicalJson('[-0, 1E+2, 1.50]'), '[0,100,1.5]');
});
