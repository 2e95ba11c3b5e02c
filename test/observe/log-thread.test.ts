// createLogDestination({ thread: true }): the writer thread, the shared ring, and every way the
// logging thread takes over (flush, exit, a full ring, a writer thread that is gone).
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { once } from 'node:events';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, test } from 'node:test';
import type { Worker } from 'node:worker_threads';
import {
  createLogDestination,
  createLogger,
  type LogDestination,
  requestLineWriter,
  requestRecordWriter,
} from '../../src/observe/log.js';
import { latencyText } from '../../src/util/latency-text.js';

const dir = mkdtempSync(join(tmpdir(), 'shoal-logthread-'));
after(() => rmSync(dir, { recursive: true, force: true }));
let files = 0;
const fresh = () => join(dir, `${++files}.ndjson`);
const linesOf = (file: string) => readFileSync(file, 'utf8').split('\n').filter(Boolean);

/** A fresh file, a threaded destination on it, a logger and its request record and line writers. */
function threaded(opts: { bufferSize?: number; flushIntervalMs: number }) {
  const file = fresh();
  const dest = createLogDestination({ path: file, thread: true, ...opts });
  const log = createLogger({ service: 's', instanceId: 'i', destination: dest });
  const record = requestRecordWriter(log);
  assert.ok(record, 'loggers on a threaded destination take request records');
  const line = requestLineWriter(log);
  assert.ok(line);
  return { file, dest, log, record, line };
}

/**
 * One request written both ways: as a record, then as the text line the request observers write
 * for the same fields. Answers what the record writer answered.
 */
function writeBoth(
  t: ReturnType<typeof threaded>,
  level: 'info' | 'error',
  id: string,
  method: string,
  route: string,
  status: number,
  ms: number,
): boolean {
  const taken = t.record(level, id, method, route, status, ms);
  t.line(
    level,
    `,"request_id":"${id}","method":${JSON.stringify(method)},"route":${JSON.stringify(route)},"status":${status},"latency_ms":${latencyText(ms)}`,
    'request',
  );
  return taken;
}

function writerOf(dest: LogDestination): Worker {
  const sym = Object.getOwnPropertySymbols(dest).find((s) => s.description === 'shoal.log.writer');
  const w = sym === undefined ? undefined : (dest as unknown as Record<symbol, Worker | undefined>)[sym];
  assert.ok(w, 'a threaded destination runs a writer thread');
  return w;
}

test('request records become the very bytes of the text request line, in order with ordinary lines', () => {
  const t = threaded({ flushIntervalMs: 60_000 });
  const { file, dest, log, record } = t;
  const realNow = Date.now;
  Date.now = () => 1_700_000_000_123;
  try {
    log.info({ n: 1 }, 'before');
    const route = '/a/:b"q\u00e9';
    for (const [level, status, ms] of [
      ['info', 200, 1.2345],
      ['error', 503, 0.05],
      ['info', 404, 12_345.6789],
    ] as const) {
      assert.equal(writeBoth(t, level, 'req-1.x:y', 'PATCH', route, status, ms), true);
    }
    log.child({ request_id: 'c' }).warn({ password: 'hunter2' }, 'after');
    log.level = 'warn';
    assert.equal(
      record('info', 'quiet', 'GET', '/', 200, 1),
      true,
      'a level that is off takes the record and drops it',
    );
  } finally {
    Date.now = realNow;
  }
  log.flush();
  const out = linesOf(file);
  assert.equal(out.length, 8);
  assert.equal(JSON.parse(out[0] as string).msg, 'before');
  for (let i = 1; i < 7; i += 2) assert.equal(out[i], out[i + 1], 'record and text line are identical');
  assert.equal(JSON.parse(out[3] as string).level, 'error');
  const last = JSON.parse(out[7] as string);
  assert.equal(last.msg, 'after');
  assert.equal(last.password, '[Redacted]');
  assert.ok(!readFileSync(file, 'utf8').includes('hunter2'));
  dest.end();
});

test('flush() writes out everything at once, while the writer thread drains the same ring', async () => {
  const { file, dest, log, record } = threaded({ bufferSize: 4096, flushIntervalMs: 5 });
  // ~16 MB of records and lines through a 1 MB ring: it wraps many times, both threads drain.
  const total = 200_000;
  for (let i = 0; i < total; i++) {
    if (i % 7 === 0) log.info({ seq: i, pad: 'p'.repeat(i % 300) }, 'text');
    else record('info', `seq-${i}`, 'GET', `/r/${i % 5}`, 200, 1);
    if (i % 5000 === 0) {
      log.flush();
      assert.equal(linesOf(file).length, i + 1, 'everything so far is in the file after flush()');
    }
    if (i % 20_000 === 0) await new Promise((r) => setTimeout(r, 10));
  }
  log.flush();
  const out = linesOf(file);
  assert.equal(out.length, total);
  out.forEach((l, i) => {
    const o = JSON.parse(l) as { seq?: number; request_id?: string; route?: string };
    assert.equal(o.seq ?? Number(o.request_id?.slice(4)), i, `line ${i} in order`);
    if (o.route !== undefined) assert.equal(o.route, `/r/${i % 5}`);
  });
  assert.equal(dest.dropped, 0);
  dest.end();
});

test('a quiet service: the writer thread writes within the flush interval, without a flush()', async () => {
  const { file, dest, log } = threaded({ flushIntervalMs: 20 });
  log.info('one');
  const deadline = Date.now() + 5000;
  while (linesOf(file).length === 0 && Date.now() < deadline) await new Promise((r) => setTimeout(r, 10));
  assert.equal(linesOf(file).length, 1);
  dest.end();
});

test('lines longer than a batch, or than a quarter of the ring, are written whole, in their place', () => {
  const { file, dest, log } = threaded({ flushIntervalMs: 60_000 });
  log.info('a');
  log.info({ big: 'x'.repeat(600_000) }, 'b');
  // Longer than a batch, shorter than the ring's quarter: written straight from the ring.
  log.info({ big: 'y'.repeat(100_000) }, 'c');
  log.info('d');
  log.flush();
  const out = linesOf(file).map((l) => JSON.parse(l) as { msg: string; big?: string });
  assert.deepEqual(
    out.map((o) => o.msg),
    ['a', 'b', 'c', 'd'],
  );
  assert.equal(out[1]?.big?.length, 600_000);
  assert.equal(out[2]?.big?.length, 100_000);
  dest.end();
});

test('when the writer thread is gone, the logging thread writes: no line lost, order kept', async () => {
  const { file, dest, log, record } = threaded({ bufferSize: 8192, flushIntervalMs: 20 });
  for (let i = 0; i < 20_000; i++) record('info', `seq-${i}`, 'GET', '/', 200, 1);
  const worker = writerOf(dest);
  const exited = once(worker, 'exit');
  await worker.terminate();
  await exited;
  await new Promise((r) => setImmediate(r));
  // More than the ring holds: without a writer thread the logging thread writes batches itself.
  for (let i = 20_000; i < 60_000; i++) record('info', `seq-${i}`, 'GET', '/', 200, 1);
  const seenBeforeFlush = linesOf(file).length;
  assert.ok(seenBeforeFlush >= 50_000, `batches were written without a flush (${seenBeforeFlush})`);
  log.flush();
  // A batch the writer had formatted but not yet marked done may appear twice; never missing.
  const ids = linesOf(file).map((l) => Number((JSON.parse(l) as { request_id: string }).request_id.slice(4)));
  const unique = [...new Set(ids)];
  assert.equal(unique.length, 60_000);
  for (let i = 1; i < unique.length; i++)
    assert.ok((unique[i] as number) > (unique[i - 1] as number), 'in order');
  dest.end();
});

test('end() writes what is left, stops the writer thread and counts later lines as dropped', async () => {
  const { file, dest, log } = threaded({ flushIntervalMs: 60_000 });
  const worker = writerOf(dest);
  // The writer thread never keeps a process alive; here the test waits for it on purpose.
  worker.ref();
  const exited = once(worker, 'exit');
  log.info('kept');
  dest.end();
  await exited;
  log.info('too late');
  requestRecordWriter(log)?.('info', 'late', 'GET', '/', 200, 1);
  assert.deepEqual(
    linesOf(file).map((l) => (JSON.parse(l) as { msg: string }).msg),
    ['kept'],
  );
  assert.equal(dest.dropped, 2);
});

test('a process that exits or crashes with a busy writer thread leaves every line, in order', () => {
  const src = new URL('../../src/observe/log.ts', import.meta.url).href;
  for (const ending of ['process.exit(0)', "throw new Error('crash')"]) {
    const file = fresh();
    const code = `
      const { createLogger, createLogDestination, requestRecordWriter } = await import(${JSON.stringify(src)});
      const log = createLogger({ service: 's', instanceId: 'i',
        destination: createLogDestination({ path: ${JSON.stringify(file)}, thread: true, flushIntervalMs: 60000 }) });
      const record = requestRecordWriter(log);
      // Give the writer thread time to start, so it is draining when the process ends.
      await new Promise((r) => setTimeout(r, 300));
      for (let i = 0; i < 100000; i++) {
        if (i % 10 === 0) log.info({ seq: i }, 'text');
        else record('info', 'seq-' + i, 'GET', '/', 200, 1);
      }
      ${ending};
    `;
    const r = spawnSync(process.execPath, ['--import', 'tsx', '--input-type=module', '-e', code], {
      encoding: 'utf8',
    });
    assert.equal(r.status === 0, ending.startsWith('process'), r.stderr);
    const out = linesOf(file);
    assert.equal(out.length, 100_000, `${ending}: ${r.stderr}`);
    out.forEach((l, i) => {
      const o = JSON.parse(l) as { seq?: number; request_id?: string };
      assert.equal(o.seq ?? Number(o.request_id?.slice(4)), i);
    });
  }
});

test('the writer thread prints latency_ms and the time exactly as the text line does', async () => {
  const { putLatency } = await import('../../src/observe/log-ring.js');
  const out = Buffer.alloc(64);
  const samples = [0, 0.0004, 0.0005, 0.05, 0.1, 0.999, 0.9995, 1, 1.2345, 999.9999, 1000, 3_600_000.25];
  let x = 0x2545f491;
  for (let i = 0; i < 20_000; i++) {
    x = (x * 1103515245 + 12345) >>> 0;
    samples.push((x / 0x100000000) * 10 ** ((i % 8) - 2));
  }
  for (const ms of samples) {
    const end = putLatency(out, 0, ms);
    assert.equal(out.toString('latin1', 0, end), latencyText(ms), `latency ${ms}`);
  }
  // Whole lines through the ring, for a spread of times, statuses and latencies.
  const t = threaded({ flushIntervalMs: 60_000 });
  const { file, dest, log } = t;
  const realNow = Date.now;
  try {
    for (let i = 0; i < 2000; i++) {
      const time = 1_000_000_000_000 + i * 7_919_000_001;
      Date.now = () => time;
      const status = 100 + (i % 500);
      writeBoth(
        t,
        status >= 500 ? 'error' : 'info',
        `r${i}`,
        'GET',
        '/',
        status,
        (samples[i] as number) * 10,
      );
    }
  } finally {
    Date.now = realNow;
  }
  log.flush();
  const lines = linesOf(file);
  assert.equal(lines.length, 4000);
  for (let i = 0; i < lines.length; i += 2) assert.equal(lines[i], lines[i + 1]);
  dest.end();
});
