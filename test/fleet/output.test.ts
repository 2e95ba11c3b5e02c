// The `ps` table and the merged log writer (prefixes, colour only when asked/TTY, line splitting).
import assert from 'node:assert/strict';
import { once } from 'node:events';
import { PassThrough, Writable } from 'node:stream';
import { test } from 'node:test';
import { createLogSink } from '../../src/fleet/logs.js';
import { formatUptime, renderTable } from '../../src/fleet/ps.js';
import type { ReplicaStatus } from '../../src/fleet/supervisor.js';

function sink(isTTY: boolean) {
  let text = '';
  const out = Object.assign(
    new Writable({
      write(chunk, _enc, cb) {
        text += chunk.toString();
        cb();
      },
    }),
    { isTTY },
  );
  return { out, text: () => text };
}

const row = (over: Partial<ReplicaStatus>): ReplicaStatus => ({
  service: 'api',
  replica: 0,
  id: 'api-0-abc123',
  pid: 4242,
  port: 40001,
  state: 'running',
  ready: true,
  inFlight: 2,
  requests: 1234,
  failures: 0,
  restarts: 1,
  uptimeMs: 185_000,
  lastExit: undefined,
  ...over,
});

test('renderTable prints the ps columns in order, one aligned row per replica', () => {
  const t = renderTable([
    row({}),
    row({
      replica: 1,
      pid: undefined,
      port: undefined,
      state: 'crash-looping',
      ready: false,
      uptimeMs: undefined,
    }),
  ]);
  const lines = t.trimEnd().split('\n');
  assert.equal(lines.length, 3);
  assert.deepEqual(lines[0]!.split(/\s+/), [
    'SERVICE',
    'REPLICA',
    'PID',
    'PORT',
    'STATE',
    'READY',
    'IN-FLIGHT',
    'REQUESTS',
    'RESTARTS',
    'UPTIME',
  ]);
  assert.deepEqual(lines[1]!.split(/\s+/), [
    'api',
    '0',
    '4242',
    '40001',
    'running',
    'yes',
    '2',
    '1234',
    '1',
    '3m05s',
  ]);
  assert.deepEqual(lines[2]!.split(/\s+/), [
    'api',
    '1',
    '-',
    '-',
    'crash-looping',
    'no',
    '2',
    '1234',
    '1',
    '-',
  ]);
  assert.equal(lines[0]!.indexOf('STATE'), lines[1]!.indexOf('running'));
  assert.equal(formatUptime(42_000), '42s');
  assert.equal(formatUptime(2 * 3600_000 + 4 * 60_000), '2h04m');
  assert.equal(formatUptime(26 * 3600_000), '1d02h');
});

test('merged logs: per-replica prefix, split lines, no colour when not a TTY', async () => {
  const s = sink(false);
  const logs = createLogSink({ out: s.out });
  const a = new PassThrough();
  logs.attach('api-0-abc', a, 'api-0');
  a.write('first li');
  a.write('ne\nsecond line\r\npartial');
  a.end();
  await once(a, 'end');
  logs.fleet('restarting api-1');
  await new Promise((r) => setImmediate(r));
  assert.equal(s.text().includes('\x1b['), false);
  const lines = s.text().trimEnd().split('\n');
  assert.deepEqual(lines, [
    'api-0-abc | first line',
    'api-0-abc | second line',
    'api-0-abc | partial',
    'shoal     | restarting api-1',
  ]);
});

test('merged logs: a colour per replica on a TTY, stable for the same replica slot', async () => {
  const s = sink(true);
  const prev = process.env.NO_COLOR;
  delete process.env.NO_COLOR;
  try {
    const logs = createLogSink({ out: s.out });
    const a = new PassThrough();
    const b = new PassThrough();
    const a2 = new PassThrough();
    logs.attach('api-0-aaa', a, 'api-0');
    logs.attach('api-1-bbb', b, 'api-1');
    logs.attach('api-0-ccc', a2, 'api-0');
    a.end('x\n');
    b.end('y\n');
    a2.end('z\n');
    await new Promise((r) => setImmediate(r));
    const colors = s
      .text()
      .trimEnd()
      .split('\n')
      .map((l) => /^\x1b\[(\d+)m/.exec(l)?.[1]);
    assert.equal(colors.length, 3);
    assert.ok(
      colors.every((c) => c !== undefined),
      s.text(),
    );
    assert.equal(colors[0], colors[2]);
    assert.notEqual(colors[0], colors[1]);
  } finally {
    if (prev !== undefined) process.env.NO_COLOR = prev;
  }
});
