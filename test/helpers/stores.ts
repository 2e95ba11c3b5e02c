// Real Redis and PostgreSQL for tests. Each test gets its own key prefix / schema so files run in
// parallel and leave nothing behind.
import { randomBytes } from 'node:crypto';
import { Redis } from 'ioredis';
import pg from 'pg';

export const REDIS_URL = process.env.TEST_REDIS_URL ?? 'redis://127.0.0.1:6379';
export const DATABASE_URL = process.env.TEST_DATABASE_URL ?? 'postgres://postgres@127.0.0.1:5432/postgres';

/** A random key prefix with a hash tag-free shape, e.g. `t:3f9a1c:`. */
export function testPrefix(label = 't'): string {
  return `${label}:${randomBytes(4).toString('hex')}:`;
}

/** A plain ioredis client for assertions; close it with `quit()`. */
export function testRedis(): Redis {
  return new Redis(REDIS_URL, { maxRetriesPerRequest: 1 });
}

/** Delete every key under a prefix (SCAN, not KEYS, so it is safe next to other tests). */
export async function dropPrefix(redis: Redis, prefix: string): Promise<void> {
  let cursor = '0';
  do {
    const [next, keys] = await redis.scan(cursor, 'MATCH', `*${prefix}*`, 'COUNT', 1000);
    cursor = next;
    if (keys.length > 0) await redis.del(...keys);
  } while (cursor !== '0');
}

export interface TestSchema {
  name: string;
  /** A DATABASE_URL whose connections use the schema as search_path. */
  url: string;
  pool: pg.Pool;
  drop(): Promise<void>;
}

/** Create a private schema; `url` sets search_path to it via the `options` parameter. */
export async function testSchema(label = 't'): Promise<TestSchema> {
  const name = `${label}_${randomBytes(4).toString('hex')}`;
  const admin = new pg.Client({ connectionString: DATABASE_URL });
  await admin.connect();
  await admin.query(`CREATE SCHEMA ${name}`);
  await admin.end();
  const u = new URL(DATABASE_URL);
  u.searchParams.set('options', `-c search_path=${name}`);
  const url = u.toString();
  const pool = new pg.Pool({ connectionString: url, max: 4 });
  return {
    name,
    url,
    pool,
    async drop() {
      await pool.end();
      const c = new pg.Client({ connectionString: DATABASE_URL });
      await c.connect();
      await c.query(`DROP SCHEMA IF EXISTS ${name} CASCADE`);
      await c.end();
    },
  };
}
