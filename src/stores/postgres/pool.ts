/**
 * PostgreSQL pool from DATABASE_URL and the DB_POOL_* settings.
 */
import pg from 'pg';
import type { ShoalConfig } from '../../config/index.js';

export type PgPool = pg.Pool;
export type PgClient = pg.PoolClient;

/** Pool settings; every field has the same default as the env schema. */
export interface PoolSettings {
  min?: number;
  max?: number;
  /** Close connections idle longer than this (ms). */
  idleMs?: number;
  /** Recycle connections older than this (ms, 0 = never) so failovers and DNS changes are picked up. */
  lifetimeMs?: number;
  connectTimeoutMs?: number;
  /** `application_name`, visible in pg_stat_activity; the instance id is a good choice. */
  applicationName?: string;
}

/**
 * Create a pg Pool. Pool errors on idle clients are swallowed into `onError` instead of
 * crashing the process (pg emits them on the pool when a server restarts).
 *
 * @example
 * const pool = createPool(process.env.DATABASE_URL!, { max: 10, applicationName: 'api-1' });
 */
export function createPool(
  url: string,
  settings: PoolSettings = {},
  onError: (err: Error) => void = () => {},
): PgPool {
  const pool = new pg.Pool({
    connectionString: url,
    min: settings.min ?? 0,
    max: settings.max ?? 10,
    idleTimeoutMillis: settings.idleMs ?? 10_000,
    maxLifetimeSeconds: Math.ceil((settings.lifetimeMs ?? 0) / 1000),
    connectionTimeoutMillis: settings.connectTimeoutMs ?? 5000,
    application_name: settings.applicationName,
  });
  pool.on('error', onError);
  return pool;
}

/**
 * Pool settings from a loaded config.
 *
 * @example
 * const pool = createPool(config.databaseUrl!, poolSettingsFrom(config));
 */
export function poolSettingsFrom(config: ShoalConfig): PoolSettings {
  return {
    min: config.db.poolMin,
    max: config.db.poolMax,
    idleMs: config.db.idleMs,
    lifetimeMs: config.db.lifetimeMs,
    connectTimeoutMs: config.db.connectTimeoutMs,
    applicationName: `${config.service}/${config.instanceId}`.slice(0, 63),
  };
}

/**
 * Run `fn` in a transaction on one pooled client; commits on success, rolls back on throw.
 *
 * @example
 * const id = await withTransaction(pool, async (tx) => (await tx.query('INSERT ... RETURNING id')).rows[0].id);
 */
export async function withTransaction<T>(pool: PgPool, fn: (client: PgClient) => Promise<T>): Promise<T> {
  const client = await pool.connect();
  try {
    await client.query('BEGIN');
    const result = await fn(client);
    await client.query('COMMIT');
    return result;
  } catch (err) {
    await client.query('ROLLBACK').catch(() => {});
    throw err;
  } finally {
    client.release();
  }
}
