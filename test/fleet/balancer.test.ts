// The fleet balancer against real node:http backends on loopback.
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import http, { type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { Socket } from 'node:net';
import { after, describe, test } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import {
  type Balancer,
  type BalancerEvent,
  type BalancerOptions,
  createBalancer,
} from '../../src/fleet/balancer/index.js';
import { signal } from '../helpers/signal.js';

// ---- fixtures --------------------------------------------------------------------------------

interface TestBackend {
  id: string;
  port: number;
  server: Server;
  healthy: boolean;
  hits: number;
  /** Extra route handler; return true when handled. */
  route?: (req: IncomingMessage, res: ServerResponse) => boolean;
  close(): Promise<void>;
}

const cleanups: Array<() => Promise<void> | void> = [];
after(async () => {
  for (const c of cleanups.reverse()) await c();
});

async function startBackend(id: string): Promise<TestBackend> {
  const sockets = new Set<Socket>();
  const b: TestBackend = {
    id,
    port: 0,
    healthy: true,
    hits: 0,
    server: http.createServer((req, res) => {
      if (req.url === '/health/ready') {
        res.writeHead(b.healthy ? 200 : 503).end();
        return;
      }
      b.hits++;
      res.setHeader('x-backend', id);
      if (b.route?.(req, res)) return;
      if (req.url === '/headers') {
        res.setHeader('content-type', 'application/json');
        res.end(JSON.stringify(req.headers));
        return;
      }
      // Default: read the body, answer with backend id and body length.
      let n = 0;
      req.on('data', (c: Buffer) => {
        n += c.length;
      });
      req.on('end', () => {
        res.setHeader('content-type', 'application/json');
        res.end(JSON.stringify({ backend: id, bytes: n, method: req.method }));
      });
    }),
    async close() {
      for (const s of sockets) s.destroy();
      await new Promise<void>((r) => b.server.close(() => r()));
    },
  };
  b.server.on('connection', (s: Socket) => {
    sockets.add(s);
    s.on('close', () => sockets.delete(s));
  });
  await new Promise<void>((r) => b.server.listen(0, '127.0.0.1', () => r()));
  const addr = b.server.address();
  b.port = typeof addr === 'object' && addr ? addr.port : 0;
  cleanups.push(() => (b.server.listening ? b.close() : undefined));
  return b;
}

async function startBalancer(
  backends: TestBackend[],
  opts: Partial<BalancerOptions> = {},
): Promise<{ lb: Balancer; port: number; events: BalancerEvent[] }> {
  const events: BalancerEvent[] = [];
  const lb = createBalancer({
    service: 'test',
    port: 0,
    healthIntervalMs: 200,
    onEvent: (e) => events.push(e),
    ...opts,
  });
  for (const b of backends) lb.addBackend({ id: b.id, host: '127.0.0.1', port: b.port });
  const { port } = await lb.listen();
  cleanups.push(() => lb.close());
  for (const b of backends) if (b.healthy) await lb.waitReady(b.id, 5000);
  return { lb, port, events };
}

interface Reply {
  status: number;
  headers: http.IncomingHttpHeaders;
  body: string;
  localPort: number;
}

function request(
  port: number,
  opts: {
    method?: string;
    path?: string;
    headers?: Record<string, string>;
    body?: string | Buffer;
    agent?: http.Agent | false;
  } = {},
): Promise<Reply> {
  return new Promise((resolve, reject) => {
    const req = http.request(
      {
        host: '127.0.0.1',
        port,
        method: opts.method ?? 'GET',
        path: opts.path ?? '/',
        headers: opts.headers,
        agent: opts.agent ?? false,
      },
      (res) => {
        const chunks: Buffer[] = [];
        res.on('data', (c: Buffer) => chunks.push(c));
        res.on('error', reject);
        res.on('aborted', () => reject(new Error('response aborted')));
        res.on('end', () =>
          resolve({
            status: res.statusCode ?? 0,
            headers: res.headers,
            body: Buffer.concat(chunks).toString(),
            localPort: res.socket?.localPort ?? 0,
          }),
        );
      },
    );
    req.on('error', reject);
    req.end(opts.body);
  });
}

function backendOf(r: Reply): string {
  return String(r.headers['x-backend']);
}

async function until(cond: () => boolean, timeoutMs: number, what: string): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!cond()) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await sleep(20);
  }
}

// ---- tests -----------------------------------------------------------------------------------

describe('balancer: distribution', () => {
  test('300 requests on fresh connections reach all 3 backends, each >= 20%', async () => {
    const bs = await Promise.all(['a', 'b', 'c'].map(startBackend));
    const { port } = await startBalancer(bs);
    const counts = new Map<string, number>();
    for (let i = 0; i < 30; i++) {
      const replies = await Promise.all(Array.from({ length: 10 }, () => request(port)));
      for (const r of replies) {
        assert.equal(r.status, 200);
        counts.set(backendOf(r), (counts.get(backendOf(r)) ?? 0) + 1);
      }
    }
    assert.deepEqual([...counts.keys()].sort(), ['a', 'b', 'c']);
    for (const [id, n] of counts) assert.ok(n >= 60, `backend ${id} got ${n}/300`);
  });

  test('300 requests on ONE keep-alive connection also reach all 3 backends', async () => {
    const bs = await Promise.all(['a', 'b', 'c'].map(startBackend));
    const { port } = await startBalancer(bs);
    const agent = new http.Agent({ keepAlive: true, maxSockets: 1 });
    cleanups.push(() => agent.destroy());
    const counts = new Map<string, number>();
    const clientPorts = new Set<number>();
    for (let i = 0; i < 300; i++) {
      const r = await request(port, { agent });
      assert.equal(r.status, 200);
      clientPorts.add(r.localPort);
      counts.set(backendOf(r), (counts.get(backendOf(r)) ?? 0) + 1);
    }
    assert.equal(clientPorts.size, 1, 'all requests must share one client connection');
    for (const id of ['a', 'b', 'c'])
      assert.ok((counts.get(id) ?? 0) >= 60, `backend ${id} got ${counts.get(id)}`);
  });

  test('least-outstanding avoids a backend that is busy with slow requests', async () => {
    const [a, b] = await Promise.all(['a', 'b'].map(startBackend));
    const held: ServerResponse[] = [];
    a!.route = (req, res) => {
      if (req.url !== '/slow') return false;
      held.push(res);
      return true;
    };
    b!.route = a!.route;
    const { port } = await startBalancer([a!, b!]);
    // Pin 4 slow requests on whichever backends they land on, then see the fast ones avoid the loaded one.
    const slow = [
      request(port, { path: '/slow' }),
      request(port, { path: '/slow' }),
      request(port, { path: '/slow' }),
    ];
    await until(() => held.length === 3, 3000, 'slow requests to arrive');
    const aSlow = a!.hits;
    const bSlow = b!.hits;
    const lighter = aSlow < bSlow ? 'a' : 'b';
    const replies = await Promise.all(Array.from({ length: 6 }, () => request(port)));
    const toLighter = replies.filter((r) => backendOf(r) === lighter).length;
    assert.ok(
      toLighter >= 3,
      `expected the less loaded backend (${lighter}) to get most fast requests, got ${toLighter}/6`,
    );
    for (const res of held) res.end('done');
    await Promise.all(slow);
  });
});

describe('balancer: limits and unavailability', () => {
  test('Content-Length over the limit -> 413 problem+json; chunked body over the limit -> 413', async () => {
    const a = await startBackend('a');
    const { port } = await startBalancer([a], { maxBodyBytes: 1000 });
    const ok = await request(port, { method: 'POST', body: 'x'.repeat(1000) });
    assert.equal(ok.status, 200);
    assert.equal(JSON.parse(ok.body).bytes, 1000);
    const hitsBefore = a.hits;
    const big = await request(port, { method: 'POST', body: 'x'.repeat(1001) });
    assert.equal(big.status, 413);
    assert.match(String(big.headers['content-type']), /application\/problem\+json/);
    const p = JSON.parse(big.body);
    assert.equal(p.status, 413);
    assert.equal(p.type, 'urn:shoal:problem:payload-too-large');
    assert.equal(a.hits, hitsBefore, 'an oversized Content-Length never reaches a backend');

    // Chunked: counted while streaming.
    const chunked = await new Promise<Reply>((resolve, reject) => {
      const req = http.request(
        { host: '127.0.0.1', port, method: 'POST', path: '/', agent: false },
        (res) => {
          const chunks: Buffer[] = [];
          res.on('data', (c: Buffer) => chunks.push(c));
          res.on('end', () =>
            resolve({
              status: res.statusCode ?? 0,
              headers: res.headers,
              body: Buffer.concat(chunks).toString(),
              localPort: 0,
            }),
          );
        },
      );
      req.on('error', reject);
      req.write('y'.repeat(600));
      setTimeout(() => req.end('y'.repeat(600)), 50);
    });
    assert.equal(chunked.status, 413);
    assert.equal(JSON.parse(chunked.body).type, 'urn:shoal:problem:payload-too-large');
  });

  test('no ready backend -> 503 problem+json with Retry-After', async () => {
    const a = await startBackend('a');
    a.healthy = false;
    const { port, lb } = await startBalancer([a]);
    await sleep(300);
    assert.equal(lb.stats()[0]?.ready, false);
    const r = await request(port);
    assert.equal(r.status, 503);
    assert.ok(Number(r.headers['retry-after']) >= 1, 'Retry-After present');
    assert.match(String(r.headers['content-type']), /application\/problem\+json/);
    assert.equal(JSON.parse(r.body).type, 'urn:shoal:problem:no-ready-replica');
    assert.equal(a.hits, 0);
    // Also with an empty backend list.
    const empty = createBalancer({ service: 'none', port: 0 });
    const { port: p2 } = await empty.listen();
    cleanups.push(() => empty.close());
    const r2 = await request(p2, { method: 'POST', body: 'abc' });
    assert.equal(r2.status, 503);
    assert.ok(r2.headers['retry-after']);
  });

  test('a backend whose health check fails stops receiving traffic within ~2 intervals and comes back', async () => {
    const [a, b] = await Promise.all(['a', 'b'].map(startBackend));
    const { port, lb, events } = await startBalancer([a!, b!], { healthIntervalMs: 200 });
    b!.healthy = false;
    const t0 = Date.now();
    await until(() => lb.stats().find((s) => s.id === 'b')?.state === 'unready', 2000, 'b unready');
    assert.ok(Date.now() - t0 <= 1000, `took ${Date.now() - t0}ms`);
    const hitsB = b!.hits;
    const replies = await Promise.all(Array.from({ length: 30 }, () => request(port)));
    assert.ok(replies.every((r) => r.status === 200 && backendOf(r) === 'a'));
    assert.equal(b!.hits, hitsB);
    assert.ok(events.some((e) => e.type === 'unready' && e.backend === 'b'));
    b!.healthy = true;
    await lb.waitReady('b', 2000);
    const back = await Promise.all(Array.from({ length: 30 }, () => request(port)));
    assert.ok(back.filter((r) => backendOf(r) === 'b').length >= 6, 'b receives traffic again');
  });
});

describe('balancer: retries on connection failure', () => {
  // A balancer where backend "dead" passed its health check, then stopped listening. Health checks
  // are slow (60 s) so only the passive path can notice; the sticky cookie routes to it on purpose.
  async function withDeadBackend() {
    const [live, dead] = await Promise.all(['live', 'dead'].map(startBackend));
    const setup = await startBalancer([live!, dead!], { strategy: 'sticky', healthIntervalMs: 60_000 });
    await dead!.close();
    return { ...setup, live: live!, cookie: { cookie: 'shoal_sticky=dead' } };
  }

  test('GET to a refused backend is retried on another; the backend is ejected', async () => {
    const { port, lb, live, cookie, events } = await withDeadBackend();
    const r = await request(port, { headers: cookie });
    assert.equal(r.status, 200);
    assert.equal(backendOf(r), 'live');
    assert.equal(live.hits, 1);
    const dead = lb.stats().find((s) => s.id === 'dead');
    assert.equal(dead?.state, 'ejected');
    assert.ok((dead?.failures ?? 0) >= 1);
    assert.ok(events.some((e) => e.type === 'ejected' && e.backend === 'dead'));
  });

  test('POST without Idempotency-Key is not retried -> 502 problem+json', async () => {
    const { port, live, cookie } = await withDeadBackend();
    const r = await request(port, { method: 'POST', headers: cookie, body: '{"a":1}' });
    assert.equal(r.status, 502);
    assert.match(String(r.headers['content-type']), /application\/problem\+json/);
    assert.equal(JSON.parse(r.body).type, 'urn:shoal:problem:bad-gateway');
    assert.equal(live.hits, 0);
  });

  test('POST with Idempotency-Key is retried with its body', async () => {
    const { port, live, cookie } = await withDeadBackend();
    const r = await request(port, {
      method: 'POST',
      headers: { ...cookie, 'idempotency-key': '"k-1"', 'content-type': 'application/json' },
      body: '{"item":"x"}',
    });
    assert.equal(r.status, 200);
    assert.deepEqual(JSON.parse(r.body), { backend: 'live', bytes: 12, method: 'POST' });
    assert.equal(live.hits, 1);
  });

  test('never retried once a response has started: a truncated response breaks the client connection', async () => {
    const [a, b] = await Promise.all(['a', 'b'].map(startBackend));
    const route = (req: IncomingMessage, res: ServerResponse): boolean => {
      if (req.url !== '/truncate') return false;
      res.writeHead(200, { 'content-length': '100' });
      res.write('partial');
      setTimeout(() => res.socket?.destroy(), 20);
      return true;
    };
    a!.route = route;
    b!.route = route;
    const { port } = await startBalancer([a!, b!]);
    await assert.rejects(request(port, { path: '/truncate' }));
    assert.equal(a!.hits + b!.hits, 1, 'the request reached exactly one backend');
  });
});

describe('balancer: client disconnects', () => {
  test('a client that disconnects aborts the upstream request', async () => {
    const a = await startBackend('a');
    const arrived = signal();
    const upstreamClosed = signal();
    a.route = (req, res) => {
      if (req.url !== '/hang') return false;
      arrived.fire();
      res.on('close', () => upstreamClosed.fire());
      return true;
    };
    const { port, lb } = await startBalancer([a]);
    const req = http.get({ host: '127.0.0.1', port, path: '/hang', agent: false });
    req.on('error', () => {});
    await arrived.done;
    assert.equal(lb.stats()[0]?.inFlight, 1);
    req.destroy();
    await Promise.race([
      upstreamClosed.done,
      sleep(3000).then(() => {
        throw new Error('upstream request was not aborted');
      }),
    ]);
    await until(() => lb.stats()[0]?.inFlight === 0, 2000, 'inFlight back to 0');
  });
});

describe('balancer: drain', () => {
  test('drainBackend resolves only after in-flight requests finish and routes nothing new', async () => {
    const [a, b] = await Promise.all(['a', 'b'].map(startBackend));
    const held: ServerResponse[] = [];
    a!.route = (req, res) => {
      if (req.url !== '/slow') return false;
      held.push(res);
      return true;
    };
    const { port, lb } = await startBalancer([a!, b!], { strategy: 'sticky' });
    const slow = request(port, { path: '/slow', headers: { cookie: 'shoal_sticky=a' } });
    await until(() => held.length === 1, 3000, 'slow request at a');
    assert.equal(lb.stats().find((s) => s.id === 'a')?.inFlight, 1);
    let drained = false;
    const drain = lb.drainBackend('a').then(() => {
      drained = true;
    });
    const hitsA = a!.hits;
    const replies = await Promise.all(
      Array.from({ length: 20 }, () => request(port, { headers: { cookie: 'shoal_sticky=a' } })),
    );
    assert.ok(
      replies.every((r) => r.status === 200 && backendOf(r) === 'b'),
      'nothing new goes to a draining backend',
    );
    assert.equal(a!.hits, hitsA);
    await sleep(100);
    assert.equal(drained, false, 'drain waits for the in-flight request');
    assert.equal(lb.stats().find((s) => s.id === 'a')?.state, 'draining');
    held[0]!.end('slow done');
    const r = await slow;
    assert.equal(r.status, 200);
    assert.equal(r.body, 'slow done');
    await drain;
    assert.equal(drained, true);
    await sleep(450); // a passing health check must not re-admit a draining backend
    assert.equal(lb.stats().find((s) => s.id === 'a')?.state, 'draining');
    lb.removeBackend('a');
    assert.deepEqual(
      lb.stats().map((s) => s.id),
      ['b'],
    );
  });
});

describe('balancer: streaming and upgrades', () => {
  test('a 20 MB upload streams through: the backend sees bytes before the client finished sending', async () => {
    const a = await startBackend('a');
    const firstSeen = signal();
    a.route = (req, res) => {
      if (req.url !== '/upload') return false;
      const hash = createHash('sha256');
      let n = 0;
      req.on('data', (c: Buffer) => {
        if (n === 0) firstSeen.fire();
        n += c.length;
        hash.update(c);
      });
      req.on('end', () => res.end(JSON.stringify({ bytes: n, sha: hash.digest('hex') })));
      return true;
    };
    const { port } = await startBalancer([a], { maxBodyBytes: 64 * 1024 * 1024 });
    const chunk = Buffer.alloc(1024 * 1024, 7);
    const expect = createHash('sha256');
    const reply = new Promise<Reply>((resolve, reject) => {
      const req = http.request(
        {
          host: '127.0.0.1',
          port,
          method: 'POST',
          path: '/upload',
          agent: false,
          headers: { 'content-length': String(20 * chunk.length) },
        },
        (res) => {
          let body = '';
          res.on('data', (c: Buffer) => {
            body += c;
          });
          res.on('end', () =>
            resolve({ status: res.statusCode ?? 0, headers: res.headers, body, localPort: 0 }),
          );
        },
      );
      req.on('error', reject);
      (async () => {
        req.write(chunk);
        expect.update(chunk);
        // If the balancer buffered the body, the backend would never see this before the end: deadlock.
        await firstSeen.done;
        for (let i = 1; i < 20; i++) {
          expect.update(chunk);
          if (!req.write(chunk)) await new Promise((r) => req.once('drain', r));
        }
        req.end();
      })().catch(reject);
    });
    const r = await reply;
    assert.equal(r.status, 200);
    const got = JSON.parse(r.body);
    assert.equal(got.bytes, 20 * 1024 * 1024);
    assert.equal(got.sha, expect.digest('hex'));
  });

  test('a 20 MB download streams through: the client gets bytes before the backend finished sending', async () => {
    const a = await startBackend('a');
    const clientFirst = signal();
    const chunk = Buffer.alloc(1024 * 1024, 9);
    a.route = (req, res) => {
      if (req.url !== '/download') return false;
      res.writeHead(200, { 'content-type': 'application/octet-stream' }); // chunked
      (async () => {
        res.write(chunk);
        await clientFirst.done;
        for (let i = 1; i < 20; i++) {
          if (!res.write(chunk)) await new Promise((r) => res.once('drain', r));
        }
        res.end();
      })();
      return true;
    };
    const { port } = await startBalancer([a]);
    const rssBefore = process.memoryUsage().rss;
    const got = await new Promise<{ bytes: number; sha: string }>((resolve, reject) => {
      const req = http.get({ host: '127.0.0.1', port, path: '/download', agent: false }, (res) => {
        const hash = createHash('sha256');
        let n = 0;
        res.on('data', (c: Buffer) => {
          if (n === 0) clientFirst.fire();
          n += c.length;
          hash.update(c);
        });
        res.on('end', () => resolve({ bytes: n, sha: hash.digest('hex') }));
      });
      req.on('error', reject);
    });
    const expect = createHash('sha256');
    for (let i = 0; i < 20; i++) expect.update(chunk);
    assert.equal(got.bytes, 20 * 1024 * 1024);
    assert.equal(got.sha, expect.digest('hex'));
    // Loose bound: buffering 20 MB (plus copies) would show; streaming stays far below.
    assert.ok(process.memoryUsage().rss - rssBefore < 60 * 1024 * 1024);
  });

  test('WebSocket-style upgrade passes through and relays bytes both ways', async () => {
    const a = await startBackend('a');
    a.server.on('upgrade', (req: IncomingMessage, socket: Socket, head: Buffer) => {
      socket.write(
        'HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nx-backend: a\r\n' +
          'x-seen-xff: ' +
          String(req.headers['x-forwarded-for']) +
          '\r\n\r\n',
      );
      if (head.length) socket.write(head);
      socket.on('data', (d: Buffer) => socket.write(Buffer.concat([Buffer.from('echo:'), d])));
    });
    const { port, lb } = await startBalancer([a]);
    const { res, socket } = await new Promise<{ res: IncomingMessage; socket: Socket }>((resolve, reject) => {
      const req = http.request({
        host: '127.0.0.1',
        port,
        path: '/ws',
        agent: false,
        headers: { connection: 'Upgrade', upgrade: 'websocket' },
      });
      req.on('upgrade', (r: IncomingMessage, s: Socket) => resolve({ res: r, socket: s }));
      req.on('response', () => reject(new Error('expected an upgrade')));
      req.on('error', reject);
      req.end();
    });
    cleanups.push(() => {
      socket.destroy();
    });
    assert.equal(res.statusCode, 101);
    assert.equal(res.headers['x-seen-xff'], '127.0.0.1');
    const reply = new Promise<string>((resolve) => socket.once('data', (d: Buffer) => resolve(d.toString())));
    socket.write('ping');
    assert.equal(await reply, 'echo:ping');
    assert.equal(lb.stats()[0]?.upgraded, 1);
    socket.destroy();
    await until(() => lb.stats()[0]?.upgraded === 0, 2000, 'upgraded count back to 0');
  });
});

describe('balancer: headers and stickiness', () => {
  test('sets X-Forwarded-For/-Proto/-Host and X-Request-Id; strips hop-by-hop fields', async () => {
    const a = await startBackend('a');
    const { port } = await startBalancer([a]);
    const r = await request(port, {
      path: '/headers',
      headers: {
        host: 'shop.example:8080',
        'x-forwarded-for': '203.0.113.9',
        'x-request-id': 'req-abc_123',
        connection: 'keep-alive, x-secret',
        'x-secret': 'hop-only',
        'keep-alive': 'timeout=5',
        'x-end-to-end': 'kept',
      },
    });
    assert.equal(r.status, 200);
    const h = JSON.parse(r.body);
    assert.equal(h['x-forwarded-for'], '203.0.113.9, 127.0.0.1');
    assert.equal(h['x-forwarded-proto'], 'http');
    assert.equal(h['x-forwarded-host'], 'shop.example:8080');
    assert.equal(h['host'], 'shop.example:8080');
    assert.equal(h['x-request-id'], 'req-abc_123');
    assert.equal(h['x-secret'], undefined);
    assert.equal(h['keep-alive'], undefined);
    assert.equal(h['x-end-to-end'], 'kept');
    // The response loses the replica's own keep-alive fields.
    assert.equal(r.headers['keep-alive'], undefined);

    const bad = await request(port, { path: '/headers', headers: { 'x-request-id': 'bad id"\\' } });
    const id = JSON.parse(bad.body)['x-request-id'];
    assert.match(id, /^[0-9a-f-]{36}$/);
    const none = await request(port, { path: '/headers' });
    const id2 = JSON.parse(none.body)['x-request-id'];
    assert.match(id2, /^[0-9a-f-]{36}$/);
    assert.notEqual(id, id2);
  });

  test('sticky cookie pins a client to one backend; new clients spread', async () => {
    const bs = await Promise.all(['a', 'b', 'c'].map(startBackend));
    const { port } = await startBalancer(bs, { strategy: 'sticky', stickyCookie: 'pin' });
    const first = await request(port);
    const setCookie = String(first.headers['set-cookie']);
    assert.match(setCookie, /^pin=[abc]; Path=\/; HttpOnly/);
    const cookie = setCookie.split(';')[0]!;
    const pinned = backendOf(first);
    for (let i = 0; i < 20; i++) {
      const r = await request(port, { headers: { cookie: 'other=1; ' + cookie } });
      assert.equal(backendOf(r), pinned);
      assert.equal(r.headers['set-cookie'], undefined, 'no new cookie while the pin is valid');
    }
    const fresh = await Promise.all(Array.from({ length: 30 }, () => request(port)));
    assert.equal(new Set(fresh.map(backendOf)).size, 3);
  });

  test('round-robin rotates over ready backends', async () => {
    const bs = await Promise.all(['a', 'b', 'c'].map(startBackend));
    const { port } = await startBalancer(bs, { strategy: 'round-robin' });
    const seq: string[] = [];
    for (let i = 0; i < 9; i++) seq.push(backendOf(await request(port)));
    for (const id of ['a', 'b', 'c']) assert.equal(seq.filter((x) => x === id).length, 3);
  });

  test('pipelined requests on one connection are answered in order', async () => {
    const bs = await Promise.all(['a', 'b'].map(startBackend));
    const { port } = await startBalancer(bs);
    const { connect } = await import('node:net');
    const sock = connect(port, '127.0.0.1');
    cleanups.push(() => {
      sock.destroy();
    });
    let data = '';
    sock.on('data', (d: Buffer) => {
      data += d.toString('latin1');
    });
    const reqs = ['/one', '/two', '/three']
      .map((p) => `POST ${p} HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\n\r\nabc`)
      .join('');
    sock.write(reqs + 'GET /headers HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n');
    await new Promise((r) => sock.on('close', r));
    const statuses = data.match(/HTTP\/1\.1 \d{3}/g) ?? [];
    assert.deepEqual(statuses, ['HTTP/1.1 200', 'HTTP/1.1 200', 'HTTP/1.1 200', 'HTTP/1.1 200']);
    assert.equal((data.match(/"bytes":3/g) ?? []).length, 3);
    assert.match(data, /connection: close/i);
  });
});
