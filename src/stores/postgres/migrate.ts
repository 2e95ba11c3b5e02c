/**
 * Migration runner for the toolkit's own tables (and, with a table of your own, for an app's).
 *
 * N instances that start together must migrate exactly once, so the runner:
 * - takes a session-level advisory lock on ONE dedicated connection, keyed by the current schema
 *   and the record table, and releases it in `finally` (waiters wake as soon as it is released);
 * - applies each pending migration in its own transaction together with its record row;
 * - re-checks the record table inside that transaction under a table lock, so the result is still
 *   exactly-once where session locks are unreliable (a transaction-pooling proxy, an embedded
 *   single-session server);
 * - refuses to run when an applied migration's file has changed (checksum mismatch), naming it.
 */
import { createHash } from 'node:crypto';
import { readdir, readFile } from 'node:fs/promises';
import { fileURLToPath } from 'node:url';
import { ShoalError } from '../../errors.js';
import type { PgClient, PgPool } from './pool.js';

/** One migration: `id` orders them; `name` is for people; `sql` may hold several statements. */
export interface Migration {
  id: number;
  name: string;
  sql: string;
  /** Where it came from, used in error messages (defaults to `NNN_<name>.sql`). */
  file?: string;
}

/** Options of {@link runMigrations}. */
export interface MigrateOptions {
  /** A directory of `NNN_<name>.sql` files (a `file:` URL or a path). */
  dir?: URL | string;
  /** Migrations given directly; combined with `dir` when both are set (ids must not collide). */
  migrations?: readonly Migration[];
  /** Record table, unqualified, created in the current schema (default `shoal_migrations`). */
  table?: string;
  /** Give up waiting for another instance's lock after this long (default 60 s). */
  lockTimeoutMs?: number;
  /** Called after each migration commits (for a log line). */
  onApplied?: (migration: Migration) => void;
}

/** What a run did. */
export interface MigrateResult {
  /** Migrations this call applied, in order; empty when another instance (or an earlier run) did. */
  applied: Migration[];
  /** Ids already recorded before this call (including ones this code base does not know). */
  alreadyApplied: number[];
}

const FILE_RE = /^(\d+)_([A-Za-z0-9_.-]+)\.sql$/;
const IDENT_RE = /^[a-z_][a-z0-9_]{0,62}$/;
const LOCK_NOT_AVAILABLE = '55P03';

/**
 * SHA-256 of the text with line endings normalised, so a CRLF checkout is not a "change".
 *
 * @example
 * migrationChecksum('SELECT 1;\r\n') === migrationChecksum('SELECT 1;\n'); // true
 */
export function migrationChecksum(sql: string): string {
  return createHash('sha256').update(sql.replace(/\r\n/g, '\n')).digest('hex');
}

function fileOf(m: Migration): string {
  return m.file ?? `${String(m.id).padStart(3, '0')}_${m.name}.sql`;
}

/**
 * Read `NNN_<name>.sql` files from a directory, ordered by their number.
 *
 * @example
 * const list = await loadMigrations(new URL('./migrations/', import.meta.url));
 */
export async function loadMigrations(dir: URL | string): Promise<Migration[]> {
  const path = typeof dir === 'string' ? dir : fileURLToPath(dir);
  let names: string[];
  try {
    names = await readdir(path);
  } catch (err) {
    throw new ShoalError(
      'store.migration_failed',
      `cannot read migrations directory ${path}: ${(err as Error).message}`,
      {
        cause: err,
      },
    );
  }
  const out: Migration[] = [];
  for (const name of names.sort()) {
    if (!name.endsWith('.sql')) continue;
    const m = FILE_RE.exec(name);
    if (!m) {
      throw new ShoalError(
        'store.migration_failed',
        `migration file ${path}/${name}: expected a name like 001_create_things.sql (number, underscore, name)`,
      );
    }
    const sql = await readFile(`${path}/${name}`, 'utf8');
    out.push({ id: Number(m[1]), name: m[2]!, sql, file: `${path}/${name}` });
  }
  return out;
}

function validate(list: Migration[]): Migration[] {
  const sorted = [...list].sort((a, b) => a.id - b.id);
  const seen = new Map<number, Migration>();
  for (const m of sorted) {
    if (!Number.isSafeInteger(m.id) || m.id < 1 || m.id > 2_147_483_647) {
      throw new ShoalError('store.migration_failed', `migration ${fileOf(m)}: id must be a positive integer`);
    }
    const other = seen.get(m.id);
    if (other) {
      throw new ShoalError(
        'store.migration_failed',
        `migrations ${fileOf(other)} and ${fileOf(m)} share the id ${m.id}; give each a unique number`,
      );
    }
    seen.set(m.id, m);
  }
  return sorted;
}

/** A stable signed 64-bit advisory-lock key for (schema, table), as a decimal string. */
function lockKey(schema: string, table: string): string {
  const digest = createHash('sha256').update(`shoal-migrate\0${schema}\0${table}`).digest();
  return digest.readBigInt64BE(0).toString();
}

async function acquireLock(client: PgClient, key: string, timeoutMs: number): Promise<void> {
  // lock_timeout bounds the wait of pg_advisory_lock; it is reset before any migration runs.
  await client.query(`SET lock_timeout = ${Math.max(1, Math.round(timeoutMs))}`);
  try {
    await client.query('SELECT pg_advisory_lock($1::bigint)', [key]);
  } catch (err) {
    if ((err as { code?: string }).code === LOCK_NOT_AVAILABLE) {
      throw new ShoalError(
        'store.migration_failed',
        `another instance held the migration lock for more than ${timeoutMs} ms; is a migration stuck? ` +
          'See pg_locks where locktype = advisory.',
        { cause: err },
      );
    }
    throw err;
  } finally {
    await client.query('RESET lock_timeout').catch(() => {});
  }
}

/**
 * Apply pending migrations exactly once across every instance that calls this at the same time.
 * Works in the connection's current schema (the first existing entry of `search_path`).
 * Migrations run inside a transaction, so statements that refuse one (CREATE INDEX CONCURRENTLY)
 * do not belong in them.
 *
 * @example
 * const { applied } = await runMigrations(pool, {
 *   dir: new URL('./migrations/', import.meta.url),
 *   table: 'app_migrations',
 * });
 */
export async function runMigrations(pool: PgPool, options: MigrateOptions = {}): Promise<MigrateResult> {
  const table = options.table ?? 'shoal_migrations';
  if (!IDENT_RE.test(table)) {
    throw new ShoalError(
      'store.migration_failed',
      `migration table name "${table}": expected lower-case letters, digits and _ (unqualified; set search_path for the schema)`,
    );
  }
  const fromDir = options.dir === undefined ? [] : await loadMigrations(options.dir);
  const migrations = validate([...fromDir, ...(options.migrations ?? [])]);
  const lockTimeoutMs = options.lockTimeoutMs ?? 60_000;

  const client = await pool.connect();
  let lockedKey: string | undefined;
  let broken: Error | undefined;
  try {
    const schemaRow = await client.query<{ s: string | null }>('SELECT current_schema() AS s');
    const schema = schemaRow.rows[0]?.s;
    if (!schema) {
      throw new ShoalError(
        'store.migration_failed',
        'no schema of search_path exists (current_schema() is null); create it or fix search_path',
      );
    }
    const key = lockKey(schema, table);
    await acquireLock(client, key, lockTimeoutMs);
    lockedKey = key;

    await client.query(
      `CREATE TABLE IF NOT EXISTS ${table} (
         id integer PRIMARY KEY,
         name text NOT NULL,
         checksum text NOT NULL,
         applied_at timestamptz NOT NULL DEFAULT now()
       )`,
    );
    const recorded = await client.query<{ id: number; name: string; checksum: string }>(
      `SELECT id, name, checksum FROM ${table} ORDER BY id`,
    );
    const byId = new Map(recorded.rows.map((r) => [r.id, r]));
    for (const m of migrations) {
      const row = byId.get(m.id);
      if (row && row.checksum !== migrationChecksum(m.sql)) {
        throw new ShoalError(
          'store.migration_failed',
          `migration ${fileOf(m)} was changed after it was applied (checksum differs from the one recorded in ` +
            `${schema}.${table} on id ${m.id}); restore the original file and add a new migration for the change`,
          { detail: { id: m.id, file: fileOf(m), table: `${schema}.${table}` } },
        );
      }
    }

    const applied: Migration[] = [];
    for (const m of migrations) {
      if (byId.has(m.id)) continue;
      await client.query('BEGIN');
      try {
        // Serialises with any other runner even where the advisory lock is not exclusive.
        await client.query(`LOCK TABLE ${table} IN SHARE ROW EXCLUSIVE MODE`);
        const again = await client.query(`SELECT 1 FROM ${table} WHERE id = $1`, [m.id]);
        if (again.rowCount === 0) {
          await client.query(m.sql);
          await client.query(`INSERT INTO ${table} (id, name, checksum) VALUES ($1, $2, $3)`, [
            m.id,
            m.name,
            migrationChecksum(m.sql),
          ]);
        }
        await client.query('COMMIT');
        if (again.rowCount === 0) {
          applied.push(m);
          options.onApplied?.(m);
        }
      } catch (err) {
        await client.query('ROLLBACK').catch((e: Error) => {
          broken = e;
        });
        throw new ShoalError(
          'store.migration_failed',
          `migration ${fileOf(m)} failed and was rolled back: ${(err as Error).message}`,
          { cause: err, detail: { id: m.id, file: fileOf(m) } },
        );
      }
    }
    return { applied, alreadyApplied: [...byId.keys()] };
  } finally {
    if (lockedKey !== undefined) {
      await client.query('SELECT pg_advisory_unlock($1::bigint)', [lockedKey]).catch((e: Error) => {
        broken = e;
      });
    }
    // A connection that failed to unlock may still hold the lock: destroy it rather than pool it.
    client.release(broken);
  }
}

/**
 * Apply the toolkit's own migrations (idempotency records and friends) in the current schema,
 * recorded in `shoal_migrations`. Call it once at startup; concurrent callers are safe.
 *
 * @example
 * const pool = createPool(config.databaseUrl!, poolSettingsFrom(config));
 * await migrateToolkit(pool);
 */
export async function migrateToolkit(
  pool: PgPool,
  options: Pick<MigrateOptions, 'table' | 'lockTimeoutMs' | 'onApplied'> = {},
): Promise<MigrateResult> {
  const dir = new URL('./migrations/', import.meta.url);
  let migrations: Migration[];
  try {
    migrations = await loadMigrations(dir);
  } catch (err) {
    // A build without any .sql asset has no directory at all: nothing to apply.
    if ((err as { cause?: { code?: string } }).cause?.code === 'ENOENT') migrations = [];
    else throw err;
  }
  return runMigrations(pool, { ...options, migrations });
}
