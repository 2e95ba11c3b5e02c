// Small pieces the benchmarks share.
import type { RedisClient } from '../src/stores/redis/client.js';

/**
 * Median of a sample (mean of the two middle values for an even count).
 *
 * @example
 * median([3, 1, 2]); // 2
 */
export function median(xs: number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  const m = s.length >> 1;
  return s.length % 2 ? s[m]! : (s[m - 1]! + s[m]!) / 2;
}

/**
 * Delete every key under `prefix`, SCAN by SCAN (never KEYS: the server may be shared).
 *
 * @example
 * await deleteByPrefix(redis, 'bench:rl:1a2b3c:');
 */
export async function deleteByPrefix(redis: RedisClient, prefix: string): Promise<void> {
  let cursor = '0';
  do {
    const [next, keys] = await redis.scan(cursor, 'MATCH', `${prefix}*`, 'COUNT', 1000);
    cursor = next;
    if (keys.length > 0) await redis.del(...keys);
  } while (cursor !== '0');
}
