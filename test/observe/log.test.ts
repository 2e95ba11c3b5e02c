// Logger and redactor behaviour without HTTP: base fields, key-name rules, depth, untouched lines.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { pino } from 'pino';
import type { Logger as ContractLogger } from '../../src/contracts/index.js';
import {
  createLogDestination,
  createLogger,
  createRedactor,
  requestLineWriter,
} from '../../src/observe/log.js';
import {
  acceptRequestId,
  createRequestIdMinter,
  isWellFormedRequestId,
} from '../../src/observe/request-id.js';
import { latencyText } from '../../src/util/latency-text.js';
import { captureSink } from './helpers.js';

test('every line carries service and instance_id; the logger satisfies the contracts Logger', () => {
  const sink = captureSink();
  const log = createLogger({ service: 'svc', instanceId: 'i-1', destination: sink.stream, level: 'debug' });
  const asContract: ContractLogger = log;
  asContract.child({ request_id: 'r-1' }).debug({ a: 1 }, 'hello');
  const [line] = sink.lines();
  assert.equal(line?.service, 'svc');
  assert.equal(line?.instance_id, 'i-1');
  assert.equal(line?.request_id, 'r-1');
  assert.equal(line?.level, 'debug');
  assert.equal(line?.msg, 'hello');
  assert.equal(typeof line?.time, 'number');
  assert.ok(Math.abs((line?.time as number) - Date.now()) < 60_000);
});

test('keys containing password/secret/token at any depth, credential headers and bearer values are censored', () => {
  const sink = captureSink();
  const log = createLogger({
    service: 's',
    instanceId: 'i',
    destination: sink.stream,
    redact: ['card_number'],
  });
  log.info(
    {
      body: { card: { apiToken: 'S1', card_number: 'S2', brand: 'visa' } },
      list: [{ user_password: 'S3' }, 'Bearer S4', ['Set-Cookie', 'S5']],
      headers: { Authorization: 'S6', cookie: 'S7', 'set-cookie': ['S8'], accept: '*/*' },
      SECRET_KEY: { nested: 'S9' },
      note: 'fine',
    },
    'payload',
  );
  // Child bindings and error objects go through the same screen.
  log.child({ refreshToken: 'S10' }).info('child');
  const err = Object.assign(new Error('failed'), { accessToken: 'S11' });
  log.error({ err }, 'with error');
  const out = sink.text();
  for (let i = 1; i <= 11; i++)
    assert.ok(!out.includes(`"S${i}"`) && !out.includes(`S${i}"`), `S${i} leaked`);
  const [first] = sink.lines();
  assert.ok(first);
  const body = first.body as { card: Record<string, unknown> };
  assert.equal(body.card.brand, 'visa');
  assert.equal(body.card.apiToken, '[Redacted]');
  assert.equal((first.headers as Record<string, unknown>).accept, '*/*');
  assert.equal(first.note, 'fine');
  assert.match(out, /"msg":"with error"/);
});

test('a line without sensitive words is returned as the same string, unparsed', () => {
  const scrub = createRedactor();
  const line = '{"level":"info","route":"/api/orders/:id","status":200,"latency_ms":1.2,"msg":"request"}\n';
  assert.equal(scrub(line), line);
  const mentions = '{"level":"info","msg":"token refreshed","count":3}\n';
  assert.equal(scrub(mentions), mentions, 'a word in a value alone changes nothing');
  assert.equal(scrub('{"a":{"b":{"myToken":"x"}}}\n'), '{"a":{"b":{"myToken":"[Redacted]"}}}\n');
  assert.equal(createRedactor({ censor: '***' })('{"password":{"deep":[1,2]}}\n'), '{"password":"***"}\n');
  assert.doesNotMatch(scrub('not json but has a token: abc\n'), /abc/);
});

test('request ids: well-formed ones are kept, others replaced by a UUID', () => {
  assert.equal(acceptRequestId('abc.DEF_1:2-3'), 'abc.DEF_1:2-3');
  for (const bad of [undefined, null, '', 'a b', 'x'.repeat(129), 'a\r\nb', 'a\nSet-Cookie: x', 'é']) {
    const id = acceptRequestId(bad);
    assert.notEqual(id, bad);
    assert.ok(isWellFormedRequestId(id));
    assert.match(id, /^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$/);
  }
  assert.notEqual(acceptRequestId(undefined), acceptRequestId(undefined));
});

test('createRequestIdMinter: UUIDv7 ids, unique, time-ordered, distinct between generators', () => {
  const v7 = /^[0-9a-f]{8}-[0-9a-f]{4}-7[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$/;
  const a = createRequestIdMinter();
  const b = createRequestIdMinter();
  const seen = new Set<string>();
  const before = Date.now();
  let previous = '';
  for (let i = 0; i < 100_000; i++) {
    const id = a();
    assert.ok(v7.test(id), id);
    assert.ok(!seen.has(id), `duplicate ${id}`);
    seen.add(id);
    // The counter may wrap inside one millisecond only after 2^26 ids; the time prefix never goes back here.
    assert.ok(id.slice(0, 13) >= previous.slice(0, 13), 'time prefix does not go backwards');
    previous = id;
  }
  const ms = Number.parseInt(previous.slice(0, 8) + previous.slice(9, 13), 16);
  assert.ok(ms >= before && ms <= Date.now(), 'the first 48 bits are the Unix time in ms');
  for (let i = 0; i < 1000; i++) assert.ok(!seen.has(b()), 'another generator does not repeat these ids');
  assert.ok(isWellFormedRequestId(a()));
  // Every time digit, across all 48 bits, and the counter stepping by one in rand_a/rand_b.
  const realNow = Date.now;
  try {
    for (const t of [0xfedcba987654, 0x0123456789ab, 1_700_000_000_000]) {
      Date.now = () => t;
      const c = createRequestIdMinter();
      const [x, y] = [c(), c()];
      assert.equal(`${x.slice(0, 8)}${x.slice(9, 13)}`, t.toString(16).padStart(12, '0'));
      const step = (id: string) =>
        Number.parseInt(id.slice(15, 18), 16) * 0x4000 + (Number.parseInt(id.slice(19, 23), 16) & 0x3fff);
      assert.equal((step(y) - step(x) + 0x4000000) % 0x4000000, 1);
      assert.equal(x.slice(23), y.slice(23), 'the random tail is drawn once per generator');
    }
  } finally {
    Date.now = realNow;
  }
  assert.equal(acceptRequestId('keep-me', a), 'keep-me');
  assert.match(acceptRequestId('bad id', a), v7);
});

test('createLogDestination batches lines, writes them on flush(), on size and when the process exits', async () => {
  const { mkdtempSync, readFileSync, rmSync } = await import('node:fs');
  const { tmpdir } = await import('node:os');
  const { join } = await import('node:path');
  const { spawnSync } = await import('node:child_process');
  const dir = mkdtempSync(join(tmpdir(), 'shoal-logdest-'));
  try {
    const file = join(dir, 'a.ndjson');
    const dest = createLogDestination({ path: file, bufferSize: 1000, flushIntervalMs: 60_000 });
    const log = createLogger({ service: 's', instanceId: 'i', destination: dest });
    log.info({ n: 1 }, 'first');
    assert.equal(readFileSync(file, 'utf8'), '', 'held in the buffer');
    log.flush();
    assert.equal(readFileSync(file, 'utf8').split('\n').filter(Boolean).length, 1);
    for (let i = 0; i < 20; i++) log.info({ n: i, pad: 'x'.repeat(60) }, 'bulk');
    const afterSize = readFileSync(file, 'utf8').split('\n').filter(Boolean).length;
    assert.ok(afterSize > 1 && afterSize <= 21, `a full buffer is written without a flush (${afterSize})`);
    dest.end();
    assert.equal(readFileSync(file, 'utf8').split('\n').filter(Boolean).length, 21);
    assert.equal(dest.dropped, 0);

    // A process that logs and exits (normally or by an uncaught exception) leaves every line.
    const child = join(dir, 'child.ndjson');
    const code = `
      const { createLogger, createLogDestination } = await import(${JSON.stringify(new URL('../../src/observe/log.ts', import.meta.url).href)});
      const log = createLogger({ service: 's', instanceId: 'i', destination: createLogDestination({ path: ${JSON.stringify(child)}, flushIntervalMs: 60000 }) });
      for (let i = 0; i < 5; i++) log.info({ i }, 'line');
      setTimeout(() => { throw new Error('crash'); }, 10);
    `;
    const r = spawnSync(process.execPath, ['--import', 'tsx', '--input-type=module', '-e', code], {
      encoding: 'utf8',
    });
    assert.notEqual(r.status, 0, 'the child crashed');
    const lines = readFileSync(child, 'utf8').split('\n').filter(Boolean);
    assert.equal(lines.length, 5, r.stderr);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test('the pre-serialised request line is byte-for-byte what pino writes, and follows the level', () => {
  const sink = captureSink();
  const log = createLogger({ service: 'svc', instanceId: 'i-1', destination: sink.stream });
  const write = requestLineWriter(log);
  assert.ok(write, 'loggers from createLogger have a line writer');
  const realNow = Date.now;
  Date.now = () => 1_700_000_000_000;
  try {
    const route = '/a/:b"q';
    log
      .child({ request_id: 'abc' })
      .error({ method: 'GET', route, status: 503, latency_ms: 1.25 }, 'request');
    write(
      'error',
      `,"request_id":"abc","method":"GET","route":${JSON.stringify(route)},"status":503,"latency_ms":1.25`,
      'request',
    );
    log.level = 'warn';
    write('info', ',"request_id":"quiet"', 'request');
  } finally {
    Date.now = realNow;
  }
  const lines = sink.text().split('\n').filter(Boolean);
  assert.equal(lines.length, 2, 'info is suppressed at level warn');
  assert.equal(lines[1], lines[0]);
  assert.equal(requestLineWriter(pinoLogger()), undefined, 'unknown loggers get no fast path');
});

function pinoLogger() {
  return pino({ level: 'silent' });
}

test('latency_ms is printed exactly as JavaScript prints the rounded number', () => {
  const samples = [0, 0.0004, 0.0005, 0.0015, 0.05, 0.1, 0.12, 0.5, 0.999, 0.9995, 1, 1.2344, 1.2345, 12.5];
  samples.push(999.9999, 1000, 60_000.001, 2_147_483.647, 3_600_000.25);
  // and a spread of values at every scale a request takes, microsecond remainders included
  let x = 0x2545f491;
  for (let i = 0; i < 20_000; i++) {
    x = (x * 1103515245 + 12345) >>> 0;
    samples.push((x / 0x100000000) * 10 ** ((i % 7) - 2));
  }
  for (const ms of samples) {
    assert.equal(latencyText(ms), String(Math.round(ms * 1000) / 1000), `latency ${ms}`);
  }
});

test('lines written in the same millisecond share its time, and a new millisecond is printed anew', () => {
  const sink = captureSink();
  const log = createLogger({ service: 'svc', instanceId: 'i-1', destination: sink.stream });
  const write = requestLineWriter(log);
  assert.ok(write);
  const realNow = Date.now;
  let now = 1_700_000_000_000;
  Date.now = () => now;
  try {
    write('info', ',"n":1', 'request');
    write('info', ',"n":2', 'request');
    now += 1;
    write('info', ',"n":3', 'request');
  } finally {
    Date.now = realNow;
  }
  const times = sink
    .text()
    .split('\n')
    .filter(Boolean)
    .map((l) => (JSON.parse(l) as { time: number }).time);
  assert.deepEqual(times, [1_700_000_000_000, 1_700_000_000_000, 1_700_000_000_001]);
});
