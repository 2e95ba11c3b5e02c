// Unit tests for the balancer's HTTP/1.1 head parsing and body framing (no sockets).
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { BodyFramer, Framing } from '../../src/fleet/balancer/framing.js';
import { isRepeatable, parseRequestHead, RequestHead } from '../../src/fleet/balancer/request-head.js';
import { parseResponseHead, ResponseHead } from '../../src/fleet/balancer/response-head.js';

const ctx = { stickyCookie: null };

describe('balancer framing', () => {
  test('chunked body split at every byte boundary finds the same end', () => {
    const body = Buffer.from(
      '5;ext=1\r\nhello\r\n1a\r\nabcdefghijklmnopqrstuvwxyz\r\n0\r\nTrailer: x\r\n\r\n',
    );
    const next = Buffer.from('GET /next HTTP/1.1\r\n');
    const all = Buffer.concat([body, next]);
    for (let cut = 1; cut < all.length; cut++) {
      const f = new BodyFramer();
      f.reset(Framing.Chunked);
      const a = all.subarray(0, cut);
      const b = all.subarray(cut);
      let used = f.consume(a, 0);
      assert.ok(used >= 0);
      if (!f.done) used += f.consume(b, 0);
      assert.equal(f.done, true, `cut at ${cut}`);
      assert.equal(used, body.length, `cut at ${cut}`);
      assert.equal(f.payload, 5 + 26);
    }
  });

  test('malformed chunk size is an error; Content-Length stops at the length', () => {
    const f = new BodyFramer();
    f.reset(Framing.Chunked);
    assert.equal(f.consume(Buffer.from('zz\r\n'), 0), -1);
    f.reset(Framing.Length, 3);
    assert.equal(f.consume(Buffer.from('abcdef'), 0), 3);
    assert.equal(f.done, true);
  });
});

describe('balancer request head', () => {
  test('adds forwarding headers and drops hop-by-hop ones', () => {
    const h = parseRequestHead(
      new RequestHead(),
      'GET /x?y=1 HTTP/1.1\r\nHost: a.test\r\nConnection: keep-alive, X-Hop\r\nX-Hop: 1\r\nKeep-Alive: 5\r\nX-Request-Id: r-1\r\nAccept: */*',
      '10.1.2.3',
      ctx,
    );
    assert.equal(h.error, '');
    assert.equal(h.close, false);
    assert.equal(h.requestId, 'r-1');
    assert.match(h.upstream, /^GET \/x\?y=1 HTTP\/1\.1\r\n/);
    assert.match(h.upstream, /\r\nHost: a\.test\r\n/);
    assert.match(h.upstream, /\r\nAccept: \*\/\*\r\n/);
    assert.match(h.upstream, /\r\nx-forwarded-for: 10\.1\.2\.3\r\n/);
    assert.match(h.upstream, /\r\nx-forwarded-host: a\.test\r\n/);
    assert.doesNotMatch(h.upstream, /X-Hop|Keep-Alive|Connection/i);
    assert.ok(h.upstream.endsWith('\r\n\r\n'));
  });

  test('Transfer-Encoding wins over Content-Length, which is removed (smuggling guard)', () => {
    const h = parseRequestHead(
      new RequestHead(),
      'POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\nTransfer-Encoding: chunked',
      '1.1.1.1',
      ctx,
    );
    assert.equal(h.framing, Framing.Chunked);
    assert.doesNotMatch(h.upstream, /content-length/i);
  });

  test('rejects conflicting lengths, folding, bad names, missing Host, CONNECT', () => {
    const bad = [
      'POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 1\r\nContent-Length: 2',
      'GET / HTTP/1.1\r\nHost: a\r\nX: 1\r\n  folded',
      'GET / HTTP/1.1\r\nHost: a\r\nBad Name: 1',
      'GET / HTTP/1.1\r\nAccept: x',
      'GET / HTTP/2.0\r\nHost: a',
      'POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: gzip',
    ];
    for (const text of bad)
      assert.notEqual(parseRequestHead(new RequestHead(), text, '1.1.1.1', ctx).error, '', text);
    const c = parseRequestHead(new RequestHead(), 'CONNECT a:443 HTTP/1.1\r\nHost: a', '1.1.1.1', ctx);
    assert.equal(c.errorStatus, 501);
  });

  test('retry safety: idempotent methods, POST only with Idempotency-Key', () => {
    const mk = (t: string) => parseRequestHead(new RequestHead(), t, '1.1.1.1', ctx);
    assert.equal(isRepeatable(mk('GET / HTTP/1.1\r\nHost: a')), true);
    assert.equal(isRepeatable(mk('DELETE / HTTP/1.1\r\nHost: a')), true);
    assert.equal(isRepeatable(mk('POST / HTTP/1.1\r\nHost: a')), false);
    assert.equal(isRepeatable(mk('POST / HTTP/1.1\r\nHost: a\r\nIdempotency-Key: "k"')), true);
  });

  test('sticky cookie value is read from the Cookie header', () => {
    const h = parseRequestHead(
      new RequestHead(),
      'GET / HTTP/1.1\r\nHost: a\r\nCookie: a=1; shoal_sticky=api-2; b=2',
      '1.1.1.1',
      { stickyCookie: 'shoal_sticky' },
    );
    assert.equal(h.sticky, 'api-2');
  });
});

describe('balancer response head', () => {
  test('framing, reuse and hop-by-hop removal', () => {
    const r = parseResponseHead(
      new ResponseHead(),
      'HTTP/1.1 200 OK\r\nContent-Length: 2\r\nConnection: keep-alive\r\nKeep-Alive: timeout=5',
      false,
      false,
      '',
    );
    assert.equal(r.framing, Framing.Length);
    assert.equal(r.reusable, true);
    assert.doesNotMatch(r.client, /keep-alive/i);
    const noLen = parseResponseHead(new ResponseHead(), 'HTTP/1.1 200 OK\r\nX: 1', false, false, '');
    assert.equal(noLen.framing, Framing.UntilClose);
    assert.equal(noLen.reusable, false);
    assert.match(noLen.client, /connection: close/);
    const head = parseResponseHead(
      new ResponseHead(),
      'HTTP/1.1 200 OK\r\nContent-Length: 9',
      true,
      true,
      'c=1',
    );
    assert.equal(head.framing, Framing.None);
    assert.match(head.client, /set-cookie: c=1\r\nconnection: close\r\n\r\n$/);
    const closing = parseResponseHead(
      new ResponseHead(),
      'HTTP/1.1 204 No Content\r\nConnection: close',
      false,
      false,
      '',
    );
    assert.equal(closing.reusable, false);
    assert.equal(closing.framing, Framing.None);
  });
});
