// Graceful shutdown: in-process unit tests on a plain node:http server, plus the fixture service
// as a child process for everything that involves real signals.
import assert from 'node:assert/strict';
import { Agent, createServer, request } from 'node:http';
import type { AddressInfo } from 'node:net';
import { Writable } from 'node:stream';
import { after, describe, test } from 'node:test';
import { pino } from 'pino';
import { createShutdown } from '../../src/lifecycle/shutdown.js';
import { type Child, listeningPort, startChild } from './fixtures/child.js';

const children: Child[] = [];
after(() => {
  for (const c of children) c.kill();
});

function captureLogger() {
  const lines: Record<string, unknown>[] = [];
  const stream = new Writable({
    write(chunk: Buffer, _enc, cb) {
      for (const l of chunk.toString().split('\n')) if (l.trim()) lines.push(JSON.parse(l));
      cb();
    },
  });
  return { logger: pino({ level: 'debug' }, stream), lines };
}

interface Reply {
  status: number;
  connection: string | undefined;
  body: string;
}

function get(port: number, path: string, agent: Agent | false): Promise<Reply> {
  return new Promise((resolve, reject) => {
    const req = request({ host: '127.0.0.1', port, path, agent }, (res) => {
      let body = '';
      res.setEncoding('utf8');
      res.on('data', (d: string) => {
        body += d;
      });
      res.on('end', () => resolve({ status: res.statusCode ?? 0, connection: res.headers.connection, body }));
      res.on('error', reject);
    });
    req.on('error', reject);
    req.end();
  });
}

describe('in-process controller', () => {
  test('closes resources in reverse order after the server drained; exit 0', async () => {
    const { logger, lines } = captureLogger();
    const order: string[] = [];
    const codes: number[] = [];
    let draining = false;
    const shutdown = createShutdown({
      logger,
      health: {
        setDraining: () => {
          draining = true;
        },
        stop: () => order.push('health'),
      },
      drainDelayMs: 50,
      timeoutMs: 5000,
      exit: (c) => codes.push(c),
    });
    const server = createServer((_req, res) => {
      setTimeout(() => res.end('done'), 300);
    });
    shutdown.trackServer(server);
    await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
    const port = (server.address() as AddressInfo).port;
    server.on('close', () => order.push('http'));
    shutdown.register('postgres', async () => {
      await new Promise((r) => setTimeout(r, 20));
      order.push('postgres');
    });
    shutdown.register('redis', () => {
      order.push('redis');
    });
    shutdown.register('workers', () => {
      order.push('workers');
    });

    const agent = new Agent({ keepAlive: true, maxSockets: 1 });
    const inflight = get(port, '/', agent);
    await new Promise((r) => setTimeout(r, 100));
    const code = await shutdown.shutdown('test');
    const reply = await inflight;
    agent.destroy();
    assert.equal(draining, true);
    assert.equal(code, 0);
    assert.deepEqual(codes, [0]);
    assert.equal(reply.status, 200);
    assert.equal(reply.body, 'done');
    // finished after the server stopped accepting: the client is told not to reuse the socket
    assert.equal(reply.connection, 'close');
    assert.deepEqual(order, ['http', 'health', 'workers', 'redis', 'postgres']);
    assert.ok(lines.some((l) => l.msg === 'shutdown complete'));
    assert.equal(shutdown.shuttingDown, true);
    // idempotent: a second call returns the same outcome without exiting twice
    assert.equal(await shutdown.shutdown('again'), 0);
    assert.deepEqual(codes, [0]);
  });

  test('an idle keep-alive socket is closed during the drain; a request on it before then is answered', async () => {
    const { logger } = captureLogger();
    const codes: number[] = [];
    const shutdown = createShutdown({
      logger,
      drainDelayMs: 0,
      timeoutMs: 5000,
      idleCloseMs: 400,
      exit: (c) => codes.push(c),
    });
    const server = createServer((_req, res) => res.end('ok'));
    shutdown.trackServer(server);
    await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
    const port = (server.address() as AddressInfo).port;
    const idleAgent = new Agent({ keepAlive: true, maxSockets: 1 });
    const busyAgent = new Agent({ keepAlive: true, maxSockets: 1 });
    assert.equal((await get(port, '/', idleAgent)).connection, 'keep-alive');
    assert.equal((await get(port, '/', busyAgent)).connection, 'keep-alive');
    const t0 = Date.now();
    const done = shutdown.shutdown('test');
    await new Promise((r) => setTimeout(r, 100));
    // reuses its kept-alive socket after the listener closed: still served, told to close
    const late = await get(port, '/', busyAgent);
    assert.equal(late.status, 200);
    assert.equal(late.connection, 'close');
    assert.equal(await done, 0);
    const elapsed = Date.now() - t0;
    // the idle socket did not hold shutdown until keepAliveTimeout
    assert.ok(elapsed < 3000, `drain took ${elapsed} ms`);
    idleAgent.destroy();
    busyAgent.destroy();
  });

  test('deadline: forced exit 1, log line names the request still running', async () => {
    const { logger, lines } = captureLogger();
    const codes: number[] = [];
    const shutdown = createShutdown({ logger, drainDelayMs: 0, timeoutMs: 500, exit: (c) => codes.push(c) });
    const server = createServer((_req, res) => {
      const t = setTimeout(() => res.end('late'), 10_000);
      res.on('close', () => clearTimeout(t));
    });
    shutdown.trackServer(server);
    await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
    const port = (server.address() as AddressInfo).port;
    const slow = get(port, '/reports/export?x=1', false).catch((e: Error) => e);
    await new Promise((r) => setTimeout(r, 100));
    assert.equal(shutdown.inFlight().length, 1);
    const code = await shutdown.shutdown('test');
    assert.equal(code, 1);
    assert.deepEqual(codes, [1]);
    const line = lines.find((l) => String(l.msg).includes('deadline'));
    assert.ok(line, 'a deadline log line');
    assert.match(String(line.msg), /GET \/reports\/export \(\d+ ms\)/);
    assert.equal(line.level, 50);
    await slow;
  });
});

describe('fixture service as a child process', () => {
  test('50 keep-alive connections under load, SIGTERM -> zero failed requests, exit 0 within the deadline', async (t) => {
    const child = startChild({ SHOAL_DRAIN_DELAY: '1s', SHOAL_SHUTDOWN_TIMEOUT: '15s' });
    children.push(child);
    const port = await listeningPort(child);

    let signalledAt = 0;
    let ok = 0;
    let okAfterSignal = 0;
    let closeHeaders = 0;
    let refused = 0;
    const failures: string[] = [];
    let stop = false;
    const loops = Array.from({ length: 50 }, async (_, i) => {
      // One socket per client, so a client reconnects only when the server said Connection: close.
      const agent = new Agent({ keepAlive: true, maxSockets: 1 });
      try {
        while (!stop) {
          try {
            const r = await get(port, `/?ms=${1 + (i % 5)}`, agent);
            if (r.status !== 200 || r.body !== 'ok') {
              failures.push(`status ${r.status} ${r.body.slice(0, 80)}`);
              continue;
            }
            ok++;
            if (signalledAt > 0) okAfterSignal++;
            if (r.connection === 'close') closeHeaders++;
          } catch (err) {
            const code = (err as NodeJS.ErrnoException).code;
            // A new connection refused after the listener closed: nothing was sent, nothing lost.
            if (code === 'ECONNREFUSED' && signalledAt > 0) {
              refused++;
              return;
            }
            // Anything else (ECONNRESET, socket hang up, ...) hit a request that was sent.
            failures.push(`${code ?? ''} ${(err as Error).message}`);
            return;
          }
        }
      } finally {
        agent.destroy();
      }
    });

    // Let the load run, then signal mid-stream.
    const warm = Date.now();
    while (ok < 500 && Date.now() - warm < 5000) await new Promise((r) => setTimeout(r, 50));
    const okBefore = ok;
    signalledAt = Date.now();
    child.proc.kill('SIGTERM');
    const exit = await child.exited;
    stop = true;
    await Promise.all(loops);

    t.diagnostic(
      JSON.stringify({
        ok,
        okBefore,
        okAfterSignal,
        closeHeaders,
        refused,
        failures: failures.length,
        exit_ms: exit.at - signalledAt,
      }),
    );
    assert.deepEqual(failures, [], 'no request that was sent may fail');
    assert.equal(exit.code, 0, child.stdout());
    const took = exit.at - signalledAt;
    assert.ok(took < 15_000, `exit after ${took} ms`);
    assert.ok(took >= 900, `the drain delay was honoured (${took} ms)`);
    assert.ok(okBefore > 0);
    assert.ok(okAfterSignal > 50, `load continued during the drain (${okAfterSignal})`);
    assert.ok(closeHeaders >= 1, 'responses during the drain carried Connection: close');
    assert.equal(refused + failures.length, 50, 'every client ended on a refused new connection');
    assert.ok(child.lines.some((l) => l.msg === 'shutdown complete'));
  });

  test('a request that outlives the deadline -> exit 1 and a log line naming it', async () => {
    const child = startChild({ SHOAL_DRAIN_DELAY: '0', SHOAL_SHUTDOWN_TIMEOUT: '1500ms' });
    children.push(child);
    const port = await listeningPort(child);
    const slow = get(port, '/slow?ms=60000', false).catch((e: Error) => e);
    // the request is in flight once the server has parsed it; give it a moment
    await new Promise((r) => setTimeout(r, 300));
    const t0 = Date.now();
    child.proc.kill('SIGTERM');
    const exit = await child.exited;
    await slow;
    assert.equal(exit.code, 1);
    const took = exit.at - t0;
    assert.ok(took >= 1400 && took < 10_000, `forced after ${took} ms`);
    const line = child.lines.find((l) => String(l.msg).includes('deadline'));
    assert.ok(line, child.stdout());
    assert.match(String(line.msg), /GET \/slow \(\d+ ms\)/);
  });

  test('a second signal forces exit at once', async () => {
    const child = startChild({ SHOAL_DRAIN_DELAY: '0', SHOAL_SHUTDOWN_TIMEOUT: '60s' });
    children.push(child);
    const port = await listeningPort(child);
    const slow = get(port, '/slow?ms=60000', false).catch((e: Error) => e);
    await new Promise((r) => setTimeout(r, 300));
    child.proc.kill('SIGTERM');
    await child.waitFor((l) => l.msg === 'shutdown started');
    const t0 = Date.now();
    child.proc.kill('SIGINT');
    const exit = await child.exited;
    await slow;
    assert.equal(exit.code, 1);
    assert.ok(exit.at - t0 < 5000, `exit ${exit.at - t0} ms after the second signal`);
    const line = child.lines.find((l) => String(l.msg).startsWith('second SIGINT'));
    assert.ok(line, child.stdout());
    assert.match(String(line.msg), /GET \/slow/);
  });

  test('invalid config -> non-zero exit and one message naming every bad variable', async () => {
    const child = startChild({
      PORT: 'eighty',
      SHOAL_REPLICAS: '0',
      LOG_LEVEL: 'loud',
      SHOAL_DRAIN_DELAY: 'soon',
      REDIS_URL: 'localhost:6379',
    });
    children.push(child);
    const exit = await child.exited;
    assert.notEqual(exit.code, 0);
    assert.equal(exit.code, 78);
    const err = child.stderr();
    assert.equal(err.match(/Invalid configuration/g)?.length, 1, err);
    for (const v of ['PORT', 'SHOAL_REPLICAS', 'LOG_LEVEL', 'SHOAL_DRAIN_DELAY', 'REDIS_URL']) {
      assert.match(err, new RegExp(`^  ${v}: expected `, 'm'), `${v} named in:\n${err}`);
    }
    assert.match(err, /^Invalid configuration \(5 variables\):/);
    // only the message: no stack trace, and the secret-bearing variable's value is not echoed
    assert.doesNotMatch(err, /\n\s+at /);
    assert.doesNotMatch(err, /localhost:6379/);
    assert.equal(child.stdout().trim(), '');
  });
});
