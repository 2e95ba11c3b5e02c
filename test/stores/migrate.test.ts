import assert from 'node:assert/strict';
import { type ChildProcess, spawn } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, test } from 'node:test';
import { isShoalError } from '../../src/errors.js';
import { migrateToolkit, runMigrations } from '../../src/stores/postgres/migrate.js';
import { createPool } from '../../src/stores/postgres/pool.js';
import { lineSplitter } from '../../src/util/lines.js';
import { type TestSchema, testSchema } from '../helpers/stores.js';
import { SAMPLE_MIGRATIONS } from './fixtures/sample-migrations.js';

const schemas: TestSchema[] = [];
const children: ChildProcess[] = [];
const dirs: string[] = [];
after(async () => {
  for (const c of children) if (c.exitCode === null && c.signalCode === null) c.kill('SIGKILL');
  for (const s of schemas) await s.drop();
  for (const d of dirs) rmSync(d, { recursive: true, force: true });
});

async function schema(): Promise<TestSchema> {
  const s = await testSchema('mig');
  schemas.push(s);
  return s;
}

function lines(child: ChildProcess): { next(): Promise<string>; all: string[] } {
  const all: string[] = [];
  const waiters: ((l: string) => void)[] = [];
  child.stdout?.setEncoding('utf8');
  child.stdout?.on(
    'data',
    lineSplitter((line) => {
      all.push(line);
      waiters.shift()?.(line);
    }).push,
  );
  let read = 0;
  return {
    all,
    next() {
      if (read < all.length) return Promise.resolve(all[read++]!);
      return new Promise((resolve) =>
        waiters.push((l) => {
          read++;
          resolve(l);
        }),
      );
    },
  };
}

test('3 instances starting together on an empty schema apply each migration exactly once', async () => {
  const s = await schema();
  const procs = [0, 1, 2].map(() => {
    const child = spawn(process.execPath, ['--import', 'tsx', 'test/stores/fixtures/migrate-child.ts'], {
      env: { ...process.env, TEST_MIGRATE_URL: s.url },
      stdio: ['pipe', 'pipe', 'inherit'],
    });
    children.push(child);
    const exited = new Promise<number | null>((resolve) => child.once('exit', (code) => resolve(code)));
    return { child, out: lines(child), exited };
  });
  // Every instance is connected before any of them starts: they really race for the lock.
  for (const p of procs) assert.equal(await p.out.next(), 'ready');
  for (const p of procs) p.child.stdin?.write('go\n');
  const results = await Promise.all(
    procs.map(async (p) => JSON.parse(await p.out.next()) as { applied: number[] }),
  );
  const codes = await Promise.all(procs.map((p) => p.exited));
  assert.deepEqual(codes, [0, 0, 0]);

  const appliedAll = results.flatMap((r) => r.applied).sort();
  assert.deepEqual(
    appliedAll,
    [1, 2, 3],
    `each id applied by exactly one instance: ${JSON.stringify(results)}`,
  );
  const log = await s.pool.query<{ note: string }>('SELECT note FROM mig_log ORDER BY n');
  assert.deepEqual(
    log.rows.map((r) => r.note),
    ['one', 'two', 'three'],
  );
  const rec = await s.pool.query<{ id: number; name: string; checksum: string; applied_at: Date }>(
    'SELECT id, name, checksum, applied_at FROM shoal_migrations ORDER BY id',
  );
  assert.deepEqual(
    rec.rows.map((r) => [r.id, r.name]),
    [
      [1, 'create_log'],
      [2, 'second'],
      [3, 'third'],
    ],
  );
  for (const r of rec.rows) {
    assert.match(r.checksum, /^[0-9a-f]{64}$/);
    assert.ok(r.applied_at instanceof Date);
  }
  // The lock was released: nothing advisory is left behind by the children.
  const locks = await s.pool.query(
    "SELECT 1 FROM pg_locks l JOIN pg_stat_activity a USING (pid) WHERE l.locktype = 'advisory' AND a.query LIKE '%pg_advisory%' AND a.state <> 'idle'",
  );
  assert.equal(locks.rowCount, 0);
});

test('in-process pools racing with Promise.all also migrate exactly once', async () => {
  const s = await schema();
  const pools = [0, 1, 2].map(() => createPool(s.url, { max: 2 }));
  try {
    const results = await Promise.all(pools.map((p) => runMigrations(p, { migrations: SAMPLE_MIGRATIONS })));
    assert.deepEqual(results.flatMap((r) => r.applied.map((m) => m.id)).sort(), [1, 2, 3]);
    const n = await s.pool.query('SELECT count(*)::int AS n FROM mig_log');
    assert.equal(n.rows[0].n, 3);
    // A later start applies nothing and reports what is there.
    const again = await runMigrations(pools[0]!, { migrations: SAMPLE_MIGRATIONS });
    assert.deepEqual(again.applied, []);
    assert.deepEqual(again.alreadyApplied, [1, 2, 3]);
  } finally {
    await Promise.all(pools.map((p) => p.end()));
  }
});

test('a changed migration file is a clear error naming the file, and nothing runs', async () => {
  const s = await schema();
  const dir = mkdtempSync(join(tmpdir(), 'shoal-mig-'));
  dirs.push(dir);
  writeFileSync(join(dir, '001_things.sql'), 'CREATE TABLE things (id int);\n');
  writeFileSync(join(dir, 'README.txt'), 'not a migration');
  const first = await runMigrations(s.pool, { dir, table: 'app_migrations' });
  assert.deepEqual(
    first.applied.map((m) => m.name),
    ['things'],
  );

  writeFileSync(join(dir, '001_things.sql'), 'CREATE TABLE things (id bigint);\n');
  writeFileSync(join(dir, '002_more.sql'), 'CREATE TABLE more_things (id int);\n');
  await assert.rejects(runMigrations(s.pool, { dir, table: 'app_migrations' }), (err: unknown) => {
    assert.ok(isShoalError(err, 'store.migration_failed'));
    assert.match(err.message, /001_things\.sql was changed after it was applied/);
    return true;
  });
  const more = await s.pool.query("SELECT to_regclass('more_things') AS t");
  assert.equal(more.rows[0].t, null, 'no later migration ran after the checksum error');

  // CRLF line endings alone are not a change.
  writeFileSync(join(dir, '001_things.sql'), 'CREATE TABLE things (id int);\r\n');
  const ok = await runMigrations(s.pool, { dir, table: 'app_migrations' });
  assert.deepEqual(
    ok.applied.map((m) => m.id),
    [2],
  );
});

test('a failing migration is rolled back, not recorded, and named; earlier ones stay applied', async () => {
  const s = await schema();
  const migrations = [
    { id: 1, name: 'good', sql: 'CREATE TABLE good (id int)' },
    { id: 2, name: 'bad', sql: 'CREATE TABLE half (id int); SELECT * FROM no_such_table' },
  ];
  await assert.rejects(runMigrations(s.pool, { migrations }), (err: unknown) => {
    assert.ok(isShoalError(err, 'store.migration_failed'));
    assert.match(err.message, /002_bad\.sql failed and was rolled back: .*no_such_table/);
    return true;
  });
  const rec = await s.pool.query('SELECT id FROM shoal_migrations ORDER BY id');
  assert.deepEqual(
    rec.rows.map((r) => r.id),
    [1],
  );
  const half = await s.pool.query("SELECT to_regclass('half') AS t");
  assert.equal(half.rows[0].t, null);
  // The pool is still usable and the lock is free: a fixed list completes.
  migrations[1] = { id: 2, name: 'bad', sql: 'CREATE TABLE half (id int)' };
  const r = await runMigrations(s.pool, { migrations });
  assert.deepEqual(
    r.applied.map((m) => m.id),
    [2],
  );
});

test('bad inputs are rejected with clear messages', async () => {
  const s = await schema();
  await assert.rejects(runMigrations(s.pool, { table: 'public.x' }), /migration table name "public\.x"/);
  await assert.rejects(
    runMigrations(s.pool, {
      migrations: [
        { id: 1, name: 'a', sql: 'SELECT 1' },
        { id: 1, name: 'b', sql: 'SELECT 1' },
      ],
    }),
    /001_a\.sql and 001_b\.sql share the id 1/,
  );
  const dir = mkdtempSync(join(tmpdir(), 'shoal-mig-'));
  dirs.push(dir);
  writeFileSync(join(dir, 'create.sql'), 'SELECT 1');
  await assert.rejects(runMigrations(s.pool, { dir }), /create\.sql: expected a name like 001_/);
  await assert.rejects(
    runMigrations(s.pool, { dir: join(dir, 'missing') }),
    /cannot read migrations directory/,
  );
});

test('a waiter gives up after lockTimeoutMs with a clear message', async () => {
  const s = await schema();
  const migrations = [{ id: 1, name: 'x', sql: 'SELECT 1' }];
  // The first runner holds the lock while its slow migration runs; the second cannot get it.
  const blocker = runMigrations(s.pool, {
    migrations: [{ id: 1, name: 'x', sql: 'SELECT pg_sleep(1.5)' }],
    lockTimeoutMs: 10_000,
  });
  await new Promise((r) => setTimeout(r, 300));
  await assert.rejects(runMigrations(s.pool, { migrations, lockTimeoutMs: 200 }), (err: unknown) => {
    assert.ok(isShoalError(err, 'store.migration_failed'));
    assert.match(err.message, /held the migration lock for more than 200 ms/);
    return true;
  });
  assert.equal((await blocker).applied.length, 1);
});

test('migrateToolkit applies the shipped migrations once and is idempotent', async () => {
  const s = await schema();
  const first = await migrateToolkit(s.pool);
  const second = await migrateToolkit(s.pool);
  assert.deepEqual(second.applied, []);
  const rec = await s.pool.query<{ id: number }>('SELECT id FROM shoal_migrations ORDER BY id');
  assert.deepEqual(
    rec.rows.map((r) => r.id),
    first.applied.map((m) => m.id),
  );
  assert.deepEqual(
    second.alreadyApplied,
    first.applied.map((m) => m.id),
  );
});
