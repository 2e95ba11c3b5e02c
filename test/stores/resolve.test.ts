import assert from 'node:assert/strict';
import { type ChildProcess, spawn } from 'node:child_process';
import { existsSync, readFileSync } from 'node:fs';
import { after, describe, test } from 'node:test';
import { Redis } from 'ioredis';
import pg from 'pg';
import { isShoalError } from '../../src/errors.js';
import { runMigrations } from '../../src/stores/postgres/migrate.js';
import { type ResolvedStore, resolvePostgres, resolveRedis } from '../../src/stores/resolve.js';
import { lineSplitter } from '../../src/util/lines.js';
import { freePort } from '../helpers/private-redis.js';
import { DATABASE_URL, REDIS_URL } from '../helpers/stores.js';
import { SAMPLE_MIGRATIONS } from './fixtures/sample-migrations.js';

const stores: ResolvedStore[] = [];
const children: ChildProcess[] = [];
const pids: number[] = [];
after(async () => {
  for (const c of children) if (c.exitCode === null && c.signalCode === null) c.kill('SIGKILL');
  for (const s of stores) await s.stop();
  // A failed assertion must not leave a server behind.
  for (const pid of pids) if (alive(pid)) process.kill(pid, 'SIGKILL');
});

/** Only PATH is inherited: REDIS_URL / DATABASE_URL of the caller must not leak into these tests. */
const ENV = { PATH: process.env.PATH };
/** Reachability deadline for servers that do exist: generous, the test machine is shared and busy. */
const SLOW = 15_000;

function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
  } catch {
    return false;
  }
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    return stat[stat.lastIndexOf(')') + 2] !== 'Z';
  } catch {
    return true;
  }
}

async function eventually(what: string, fn: () => boolean, ms = 10_000): Promise<void> {
  const deadline = Date.now() + ms;
  while (!fn()) {
    if (Date.now() > deadline) assert.fail(`timed out waiting until ${what}`);
    await new Promise((r) => setTimeout(r, 25));
  }
}

async function redisAnswers(url: string): Promise<string> {
  const r = new Redis(url, { lazyConnect: true, retryStrategy: () => null, maxRetriesPerRequest: 0 });
  r.on('error', () => {});
  try {
    await r.connect();
    await r.set('shoal:resolve:probe', 'v');
    return (await r.get('shoal:resolve:probe')) ?? '';
  } finally {
    r.disconnect();
  }
}

interface ChildRun {
  child: ChildProcess;
  info: Promise<{ url: string; dir: string; pid: number; source: string }>;
  lines: string[];
  exited: Promise<{ code: number | null; signal: NodeJS.Signals | null }>;
}

function runChild(kind: 'redis' | 'postgres', mode: 'exit' | 'wait' | 'handler'): ChildRun {
  const child = spawn(
    process.execPath,
    ['--import', 'tsx', 'test/stores/fixtures/resolve-child.ts', kind, mode],
    {
      stdio: ['ignore', 'pipe', 'inherit'],
    },
  );
  children.push(child);
  const lines: string[] = [];
  let resolveInfo: (v: ChildRun['info'] extends Promise<infer T> ? T : never) => void = () => {};
  const info = new Promise<Awaited<ChildRun['info']>>((res) => {
    resolveInfo = res;
  });
  child.stdout?.setEncoding('utf8');
  child.stdout?.on(
    'data',
    lineSplitter((line) => {
      lines.push(line);
      if (lines.length === 1) {
        const parsed = JSON.parse(line);
        pids.push(parsed.pid);
        resolveInfo(parsed);
      }
    }).push,
  );
  const exited = new Promise<{ code: number | null; signal: NodeJS.Signals | null }>((res) =>
    child.once('exit', (code, signal) => res({ code, signal })),
  );
  return { child, info, lines, exited };
}

// Independent tests (own servers, ports and directories): run side by side to save wall time.
describe('resolver', { concurrency: true }, () => {
  test('a given URL that does not answer fails at once with a clear message and no password', async () => {
    const port = await freePort();
    await assert.rejects(
      resolveRedis({ url: `redis://:hunter2@127.0.0.1:${port}`, env: ENV }),
      (err: unknown) => {
        assert.ok(isShoalError(err, 'resolve.redis_unavailable'));
        assert.match(
          err.message,
          new RegExp(`the Redis URL given \\(redis://:\\*\\*\\*@127\\.0\\.0\\.1:${port}\\) is not reachable`),
        );
        assert.match(err.message, /ECONNREFUSED/);
        assert.doesNotMatch(err.message, /hunter2/);
        return true;
      },
    );
    await assert.rejects(
      resolvePostgres({ env: { ...ENV, DATABASE_URL: `postgres://app:hunter2@127.0.0.1:${port}/app` } }),
      (err: unknown) => {
        assert.ok(isShoalError(err, 'resolve.postgres_unavailable'));
        assert.match(
          err.message,
          /^DATABASE_URL \(postgres:\/\/app:\*\*\*@127\.0\.0\.1:\d+\/app\) is not reachable: .*ECONNREFUSED/,
        );
        assert.match(err.message, /unset DATABASE_URL/);
        assert.doesNotMatch(err.message, /hunter2/);
        return true;
      },
    );
  });

  test('a reachable URL is used as is; otherwise the default local port is found', async () => {
    const viaEnv = await resolveRedis({ env: { ...ENV, REDIS_URL }, timeoutMs: SLOW });
    assert.deepEqual([viaEnv.source, viaEnv.url], ['env', REDIS_URL]);
    const pgEnv = await resolvePostgres({ url: DATABASE_URL, env: ENV, timeoutMs: SLOW });
    assert.deepEqual([pgEnv.source, pgEnv.url], ['env', DATABASE_URL]);
    // The shared servers of this machine listen on the default ports.
    const local = await resolveRedis({ env: ENV, allowStart: false, timeoutMs: SLOW });
    assert.deepEqual([local.source, local.url], ['local', 'redis://127.0.0.1:6379']);
    const pgLocal = await resolvePostgres({ env: ENV, allowStart: false, timeoutMs: SLOW });
    assert.deepEqual([pgLocal.source, pgLocal.url], ['local', 'postgres://postgres@127.0.0.1:5432/postgres']);
    await local.stop(); // a no-op for a server it did not start
    assert.equal(await redisAnswers(local.url), 'v');
  });

  test('nothing reachable and nothing installed: the error says what to install or set', async () => {
    const port = await freePort();
    await assert.rejects(resolveRedis({ env: ENV, localPort: port, binDirs: [] }), (err: unknown) => {
      assert.ok(isShoalError(err, 'resolve.redis_unavailable'));
      assert.match(err.message, new RegExp(`nothing usable answers at redis://127\\.0\\.0\\.1:${port}`));
      assert.match(err.message, /redis-server is not installed/);
      assert.match(err.message, /apt-get install redis-server/);
      assert.match(err.message, /REDIS_URL=redis:\/\//);
      return true;
    });
    await assert.rejects(resolvePostgres({ env: ENV, probeLocal: false, binDirs: [] }), (err: unknown) => {
      assert.ok(isShoalError(err, 'resolve.postgres_unavailable'));
      assert.match(err.message, /initdb\/pg_ctl are not installed/);
      assert.match(err.message, /apt-get install postgresql/);
      assert.match(err.message, /DATABASE_URL=postgres:\/\//);
      return true;
    });
  });

  test('starts a private redis-server when none is reachable; stop() removes it and its directory', async () => {
    const r = await resolveRedis({ env: ENV, probeLocal: false });
    stores.push(r);
    assert.equal(r.source, 'started');
    assert.ok(r.dir && existsSync(r.dir), 'private directory exists while running');
    assert.ok(r.pid && alive(r.pid));
    assert.notEqual(r.url, 'redis://127.0.0.1:6379');
    assert.equal(await redisAnswers(r.url), 'v');
    await r.stop();
    await r.stop(); // idempotent
    assert.equal(existsSync(r.dir), false, 'directory removed');
    assert.equal(alive(r.pid), false, 'redis-server stopped');
    await assert.rejects(redisAnswers(r.url));
  });

  test('a started redis-server goes away with the process that owns it (normal exit, and death by signal)', async () => {
    const normal = runChild('redis', 'exit');
    const killed = runChild('redis', 'wait');
    const [a, b] = await Promise.all([normal.info, killed.info]);
    assert.equal(a.source, 'started');
    assert.ok(a.dir.length > 0 && b.dir.length > 0);
    assert.equal((await normal.exited).code, 0);
    await eventually('the exited owner’s redis-server is gone', () => !alive(a.pid));
    assert.equal(existsSync(a.dir), false, 'directory removed at exit');

    assert.equal(await redisAnswers(b.url), 'v');
    killed.child.kill('SIGTERM');
    const ended = await killed.exited;
    assert.equal(ended.signal, 'SIGTERM', 'the signal still terminates the owner');
    await eventually('the killed owner’s redis-server is gone', () => !alive(b.pid));
    assert.equal(existsSync(b.dir), false, 'directory removed on SIGTERM');
  });

  test('an owner with its own SIGTERM handler keeps the server while it drains; cleanup happens at exit', async () => {
    const run = runChild('redis', 'handler');
    const info = await run.info;
    run.child.kill('SIGTERM');
    const ended = await run.exited;
    assert.equal(ended.code, 0);
    assert.deepEqual(JSON.parse(run.lines[1] ?? 'null'), { drainingServerUp: true });
    await eventually('redis-server gone', () => !alive(info.pid));
    assert.equal(existsSync(info.dir), false);
  });

  test('starts a private PostgreSQL (initdb + pg_ctl) usable by pg and the migration runner; removed when the owner dies', async () => {
    const t0 = Date.now();
    const run = runChild('postgres', 'wait');
    const info = await run.info;
    const startMs = Date.now() - t0;
    assert.equal(info.source, 'started');
    assert.match(info.url, /^postgres:\/\/postgres@127\.0\.0\.1:\d+\/postgres$/);
    assert.notEqual(info.url, DATABASE_URL);
    assert.ok(existsSync(`${info.dir}/data/PG_VERSION`));
    assert.ok(alive(info.pid));

    const pool = new pg.Pool({ connectionString: info.url, max: 3 });
    try {
      const r = await pool.query<{ port: string }>('SHOW port');
      assert.equal(r.rows[0]?.port, new URL(info.url).port);
      const m = await runMigrations(pool, { migrations: SAMPLE_MIGRATIONS });
      assert.equal(m.applied.length, 3);
    } finally {
      await pool.end();
    }
    run.child.kill('SIGTERM');
    assert.equal((await run.exited).signal, 'SIGTERM');
    await eventually('postmaster gone', () => !alive(info.pid));
    assert.equal(existsSync(info.dir), false, 'cluster directory removed');
    console.log(`# private PostgreSQL start in a child process: ${startMs} ms`);
  });

  test('stop() of a started PostgreSQL shuts it down and removes its directory', async () => {
    const lines: string[] = [];
    const db = await resolvePostgres({ env: ENV, probeLocal: false, log: (l) => lines.push(l) });
    stores.push(db);
    assert.equal(db.source, 'started');
    assert.ok(db.pid && db.dir);
    pids.push(db.pid);
    assert.ok(
      lines.some((l) => /private PostgreSQL ready on 127\.0\.0\.1:\d+ after \d+ ms/.test(l)),
      lines.join('\n'),
    );
    console.log(`# in-process: ${lines.find((l) => l.includes('ready on'))}`);
    const c = new pg.Client({ connectionString: db.url });
    await c.connect();
    assert.equal((await c.query('SELECT 1 AS one')).rows[0].one, 1);
    await c.end();
    await db.stop();
    assert.equal(alive(db.pid), false);
    assert.equal(existsSync(db.dir), false);
  });
});

// Alone, after the others: compiling PGlite's WebAssembly blocks this process's event loop for
// seconds, which would starve the timers of tests running beside it.
test('PGlite fallback: served over the wire protocol to several pg clients at once', async () => {
  const db = await resolvePostgres({ env: ENV, probeLocal: false, allowStart: false, allowPglite: true });
  stores.push(db);
  assert.equal(db.source, 'pglite');
  const pool = new pg.Pool({ connectionString: db.url, max: 3 });
  try {
    // Three concurrent pool users, two migration runners racing: still exactly once.
    const [m1, m2] = await Promise.all([
      runMigrations(pool, { migrations: SAMPLE_MIGRATIONS }),
      runMigrations(pool, { migrations: SAMPLE_MIGRATIONS }),
      pool.query('SELECT 1'),
    ]);
    assert.equal(m1.applied.length + m2.applied.length, 3);
    const rows = await pool.query<{ note: string }>('SELECT note FROM mig_log ORDER BY n');
    assert.deepEqual(
      rows.rows.map((r) => r.note),
      ['one', 'two', 'three'],
    );
  } finally {
    await pool.end();
  }
  await db.stop();
});
