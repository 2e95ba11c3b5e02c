import assert from 'node:assert/strict';
import { test } from 'node:test';
import { subjectOf } from '../../src/ratelimit/keys.js';

test('subjectOf keeps short plain subjects and digests anything a key must not carry', () => {
  for (const plain of ['203.0.113.9', '2001:db8::1', 'user:42', 'zoë', 'ключ', '😀', 'a'.repeat(64)]) {
    assert.equal(subjectOf(plain, 64), plain, JSON.stringify(plain));
  }
  const bad = [
    'a'.repeat(65), // too long
    'a{b}', // a hash tag would move the key's Cluster slot
    '{',
    'x}',
    '#x', // '#' marks digests
    'a b',
    'a\tb',
    'a\nb',
    'a\u0000b',
    'a\u001fb',
    'a\u007fb',
    'a\u00a0b', // whitespace above ASCII
    'a\u2028b',
    'a\u3000b',
    'a\ufeffb',
  ];
  for (const raw of bad) {
    const s = subjectOf(raw, 64);
    assert.match(s, /^#[A-Za-z0-9_-]{27}$/, JSON.stringify(raw));
    assert.equal(subjectOf(raw, 64), s, 'the digest is stable');
  }
  assert.notEqual(subjectOf('a b', 64), subjectOf('a\tb', 64));
});
