import assert from 'node:assert/strict';
import type { AddressInfo } from 'node:net';
import { test } from 'node:test';
import { serve } from '@hono/node-server';
import { Hono } from 'hono';
import { clientIpOf, createClientIp } from '../../src/enrich/client-ip.js';

test('client-ip: X-Forwarded-For is believed only from trusted proxies', () => {
  const ip = createClientIp();
  assert.equal(ip('127.0.0.1', '203.0.113.9'), '203.0.113.9');
  assert.equal(ip('::ffff:127.0.0.1', '203.0.113.9'), '203.0.113.9');
  assert.equal(ip('::1', '203.0.113.9, 127.0.0.1'), '203.0.113.9');
  // the client prepends a forged address; the loopback proxy appended the real one
  assert.equal(ip('127.0.0.1', '1.1.1.1, 198.51.100.4'), '198.51.100.4');
  assert.equal(ip('198.51.100.7', '1.2.3.4'), '198.51.100.7');
  assert.equal(ip('127.0.0.1', 'garbage'), '127.0.0.1');
  assert.equal(ip('127.0.0.1', undefined), '127.0.0.1');
  assert.equal(ip(undefined, '1.2.3.4'), 'unknown');
  assert.equal(ip('127.0.0.1', '[2001:db8::1]:443'), '2001:db8::1');
  assert.equal(ip('127.0.0.1', '192.0.2.1:8080'), '192.0.2.1');
  const ten = createClientIp({ trustedProxies: '10.0.0.0/8, loopback' });
  assert.equal(ten('10.1.2.3', '192.0.2.5, 10.9.9.9'), '192.0.2.5');
  const none = createClientIp({ trustedProxies: 'none' });
  assert.equal(none('127.0.0.1', '192.0.2.5'), '127.0.0.1');
  assert.throws(() => createClientIp({ trustedProxies: '10.0.0.0/33' }), /10\.0\.0\.0\/33/);
  assert.throws(() => createClientIp({ trustedProxies: ['lopback'] }), /lopback/);
});

test('client-ip: a spoofed X-Forwarded-For from an untrusted peer is ignored (real socket)', async () => {
  // Trust only a range the test client is not in, so the real loopback peer is "untrusted".
  const resolver = createClientIp({ trustedProxies: '10.0.0.0/8' });
  const app = new Hono();
  app.get('/ip', (c) => c.text(clientIpOf(c, resolver)));
  const server = serve({ fetch: app.fetch, port: 0, hostname: '127.0.0.1' });
  await new Promise<void>((r) => server.once('listening', () => r()));
  try {
    const port = (server.address() as AddressInfo).port;
    const spoofed = await fetch(`http://127.0.0.1:${port}/ip`, { headers: { 'x-forwarded-for': '6.6.6.6' } });
    assert.equal(await spoofed.text(), '127.0.0.1');
    // With loopback trusted (the default), the same header is honoured.
    const app2 = new Hono();
    const trusting = createClientIp();
    app2.get('/ip', (c) => c.text(clientIpOf(c, trusting)));
    const s2 = serve({ fetch: app2.fetch, port: 0, hostname: '127.0.0.1' });
    await new Promise<void>((r) => s2.once('listening', () => r()));
    const p2 = (s2.address() as AddressInfo).port;
    const honoured = await fetch(`http://127.0.0.1:${p2}/ip`, { headers: { 'x-forwarded-for': '6.6.6.6' } });
    assert.equal(await honoured.text(), '6.6.6.6');
    await new Promise((r) => s2.close(r));
    // app.request() has no socket: unknown peer, header ignored.
    const res = await app.request('/ip', { headers: { 'x-forwarded-for': '6.6.6.6' } });
    assert.equal(await res.text(), 'unknown');
  } finally {
    await new Promise((r) => server.close(r));
  }
});
