/**
 * PostgreSQL record store with a transactional mode: the handler's own writes, the completion of
 * the record and the stored response commit in ONE transaction, so a database effect happens
 * exactly once even across crashes, pauses and retries on other instances.
 *
 * How: the claim commits on its own (so other instances see the lease at once), the handler
 * writes through a transaction the engine opens lazily, and completion is a compare-and-set
 * UPDATE inside that same transaction. If a paused owner's lease was taken over, its UPDATE
 * matches no row and the whole transaction, handler writes included, rolls back.
 */
import { ShoalError } from '../errors.js';
import type { PgClient, PgPool } from '../stores/postgres/pool.js';
import type { ClaimOutcome, Completion, IdempotencyStore, StoredResponse } from './store.js';

/** Options for {@link postgresIdempotencyStore}. */
export interface PostgresIdempotencyStoreOptions {
  pool: PgPool;
  /** Table created by the toolkit migration (default `shoal_idempotency`); may be schema-qualified. */
  table?: string;
  /**
   * PostgreSQL ends a handler transaction that sits idle this long (default 60 s), so a frozen
   * owner cannot hold row locks forever. Keep it above the longest pause between a handler's queries.
   */
  idleTransactionTimeoutMs?: number;
}

interface Row {
  outcome: 'claimed' | 'existing';
  takeover: boolean | null;
  same: boolean | null;
  state: string | null;
  left_ms: string | number | null;
  status: number | null;
  headers: [string, string][] | null;
  body: Buffer | null;
  replayable: boolean | null;
}

function existing(row: Row): ClaimOutcome {
  if (!row.same) return { kind: 'mismatch' };
  if (row.state === 'done') {
    const response: StoredResponse | null =
      row.replayable && row.status !== null
        ? { status: row.status, headers: row.headers ?? [], body: row.body ?? Buffer.alloc(0) }
        : null;
    return { kind: 'done', response };
  }
  const left = Number(row.left_ms ?? 0);
  return { kind: 'in_flight', leaseRemainingMs: left > 0 ? Math.ceil(left) : 0 };
}

/**
 * PostgreSQL store. Apply the toolkit migration first (`migrateToolkit(pool)`); its handlers may
 * ask for the request's transaction (`await c.var.idempotency.tx()` in Hono).
 *
 * @example
 * await migrateToolkit(pool);
 * const idem = createIdempotency({ store: postgresIdempotencyStore({ pool }) });
 */
export function postgresIdempotencyStore(
  options: PostgresIdempotencyStoreOptions,
): IdempotencyStore<PgClient> {
  const { pool } = options;
  const table = options.table ?? 'shoal_idempotency';
  if (!/^[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)?$/.test(table)) {
    throw new ShoalError('config.invalid', `postgresIdempotencyStore: bad table name "${table}"`);
  }
  const idleMs = Math.max(1, Math.round(options.idleTransactionTimeoutMs ?? 60_000));

  // One statement: claim when free, expired or abandoned with the same fingerprint; otherwise
  // report the row. The outer SELECT shares the statement's snapshot, so a row committed by a
  // concurrent claim after that snapshot can make it come back empty: the caller then retries.
  const claimSql = `
    WITH claimed AS (
      INSERT INTO ${table} AS r (key, fingerprint, state, token, lease_until, expires_at)
      VALUES ($1, $2, 'in_flight', $3, now() + $4::float8 * interval '1 millisecond',
              now() + $5::float8 * interval '1 millisecond')
      ON CONFLICT (key) DO UPDATE SET
        fingerprint = EXCLUDED.fingerprint, state = 'in_flight', token = EXCLUDED.token,
        lease_until = EXCLUDED.lease_until, expires_at = EXCLUDED.expires_at,
        status = NULL, headers = NULL, body = NULL, replayable = NULL, completed_at = NULL,
        takeovers = CASE WHEN r.expires_at <= now() THEN 0 ELSE r.takeovers + 1 END,
        created_at = CASE WHEN r.expires_at <= now() THEN now() ELSE r.created_at END
      WHERE r.expires_at <= now()
         OR (r.state = 'in_flight' AND r.lease_until <= now() AND r.fingerprint = EXCLUDED.fingerprint)
      RETURNING r.takeovers > 0 AS takeover
    )
    SELECT 'claimed' AS outcome, takeover, NULL::boolean AS same, NULL AS state, NULL::float8 AS left_ms,
           NULL::integer AS status, NULL::jsonb AS headers, NULL::bytea AS body, NULL::boolean AS replayable
      FROM claimed
    UNION ALL
    SELECT 'existing', NULL, fingerprint = $2, state,
           extract(epoch FROM (lease_until - now())) * 1000, status, headers, body, replayable
      FROM ${table}
     WHERE key = $1 AND NOT EXISTS (SELECT 1 FROM claimed)`;

  const peekSql = `
    SELECT 'existing' AS outcome, NULL AS takeover, fingerprint = $2 AS same, state,
           extract(epoch FROM (lease_until - now())) * 1000 AS left_ms, status, headers, body, replayable
      FROM ${table} WHERE key = $1 AND expires_at > now()`;

  const completeSql = `
    UPDATE ${table}
       SET state = 'done', token = NULL, lease_until = NULL, status = $3, headers = $4::jsonb, body = $5,
           replayable = $6, completed_at = now(), expires_at = now() + $7::float8 * interval '1 millisecond'
     WHERE key = $1 AND token = $2 AND state = 'in_flight'`;

  const renewSql = `
    UPDATE ${table} SET lease_until = now() + $3::float8 * interval '1 millisecond'
     WHERE key = $1 AND token = $2 AND state = 'in_flight'`;

  const releaseSql = `DELETE FROM ${table} WHERE key = $1 AND token = $2 AND state = 'in_flight'`;

  const completeParams = (key: string, token: string, c: Completion, retentionMs: number): unknown[] =>
    c.kind === 'store'
      ? [
          key,
          token,
          c.response.status,
          JSON.stringify(c.response.headers),
          Buffer.from(c.response.body),
          true,
          retentionMs,
        ]
      : [key, token, c.status, null, null, false, retentionMs];

  // A client whose transaction state is unknown is destroyed rather than returned to the pool.
  const finish = async (tx: PgClient, sql: 'COMMIT' | 'ROLLBACK') => {
    try {
      await tx.query(sql);
      tx.release();
    } catch (err) {
      tx.release(err as Error);
      throw err;
    }
  };

  return {
    name: 'postgres',
    async claim(key, fingerprint, token, leaseMs, retentionMs) {
      // Read first: replays, mismatches and conflicts are answered without taking a row lock,
      // which would give the statement a transaction id and a WAL flush at commit.
      const seen = (await pool.query<Row>(peekSql, [key, fingerprint])).rows[0];
      if (seen) {
        const outcome = existing(seen);
        if (outcome.kind !== 'in_flight' || outcome.leaseRemainingMs > 0) return outcome;
      }
      for (let attempt = 0; ; attempt++) {
        const { rows } = await pool.query<Row>(claimSql, [key, fingerprint, token, leaseMs, retentionMs]);
        const row = rows[0];
        if (row)
          return row.outcome === 'claimed' ? { kind: 'claimed', takeover: !!row.takeover } : existing(row);
        if (attempt >= 5) throw new Error('idempotency claim: record kept changing under concurrent claims');
      }
    },
    async peek(key, fingerprint) {
      const { rows } = await pool.query<Row>(peekSql, [key, fingerprint]);
      return rows[0] ? existing(rows[0]) : undefined;
    },
    async renew(key, token, leaseMs) {
      const r = await pool.query(renewSql, [key, token, leaseMs]);
      return r.rowCount === 1;
    },
    async complete(key, token, completion, retentionMs, tx) {
      const params = completeParams(key, token, completion, retentionMs);
      if (!tx) {
        const r = await pool.query(completeSql, params);
        return r.rowCount === 1;
      }
      let owned: boolean;
      try {
        owned = (await tx.query(completeSql, params)).rowCount === 1;
      } catch (err) {
        await finish(tx, 'ROLLBACK').catch(() => {});
        throw err;
      }
      await finish(tx, owned ? 'COMMIT' : 'ROLLBACK');
      return owned;
    },
    async release(key, token) {
      const r = await pool.query(releaseSql, [key, token]);
      return r.rowCount === 1;
    },
    async begin() {
      const tx = await pool.connect();
      try {
        await tx.query(`BEGIN; SET LOCAL idle_in_transaction_session_timeout = ${idleMs}`);
      } catch (err) {
        tx.release(err as Error);
        throw err;
      }
      return tx;
    },
    commit: (tx) => finish(tx, 'COMMIT'),
    rollback: (tx) => finish(tx, 'ROLLBACK'),
  };
}

/**
 * Delete records whose retention has passed (claims treat them as absent already; this only
 * reclaims space). Run it from a scheduled job; `limit` bounds one batch.
 *
 * @example
 * setInterval(() => purgeIdempotencyRecords(pool).catch(() => {}), 10 * 60_000).unref();
 */
export async function purgeIdempotencyRecords(
  pool: PgPool,
  limit = 10_000,
  table = 'shoal_idempotency',
): Promise<number> {
  if (!/^[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)?$/.test(table)) {
    throw new ShoalError('config.invalid', `purgeIdempotencyRecords: bad table name "${table}"`);
  }
  const r = await pool.query(
    `DELETE FROM ${table} WHERE key IN (SELECT key FROM ${table} WHERE expires_at <= now() LIMIT $1)`,
    [limit],
  );
  return r.rowCount ?? 0;
}
