/**
 * Redis record store: claim, renew and complete are each one Lua script, one round trip.
 */

import type { RedisClient } from '../stores/redis/client.js';
import { loadLuaFile, runScript } from '../stores/redis/scripts.js';
import {
  type ClaimOutcome,
  type Completion,
  decodeResponse,
  encodeResponse,
  type IdempotencyStore,
} from './store.js';

/** Options for {@link redisIdempotencyStore}. */
export interface RedisIdempotencyStoreOptions {
  redis: RedisClient;
  /** Prefix of every record key (default `shoal:idem:`). */
  prefix?: string;
}

type ClaimReply = [0, number] | [1, string] | [2] | [3, number];

function toOutcome(reply: ClaimReply): ClaimOutcome {
  switch (reply[0]) {
    case 0:
      return { kind: 'claimed', takeover: reply[1] === 1 };
    case 1:
      return { kind: 'done', response: reply[1] === '' ? null : decodeResponse(reply[1]) };
    case 2:
      return { kind: 'mismatch' };
    default:
      return { kind: 'in_flight', leaseRemainingMs: Number(reply[1]) };
  }
}

/**
 * The default store. Records are hashes under `prefix + scopedKey`; the key's TTL is the
 * retention, while the lease lives in a field compared against Redis `TIME`, so a crashed owner
 * frees the key after the lease, not after the retention.
 *
 * @example
 * const store = redisIdempotencyStore({ redis: createRedis(process.env.REDIS_URL!) });
 * const idem = createIdempotency({ store });
 */
export function redisIdempotencyStore(options: RedisIdempotencyStoreOptions): IdempotencyStore {
  const { redis } = options;
  const prefix = options.prefix ?? 'shoal:idem:';
  const claimScript = loadLuaFile(import.meta.url, './scripts/claim-1.lua');
  const completeScript = loadLuaFile(import.meta.url, './scripts/complete-1.lua');
  const renewScript = loadLuaFile(import.meta.url, './scripts/renew-1.lua');

  return {
    name: 'redis',
    async claim(key, fingerprint, token, leaseMs, retentionMs) {
      const reply = await runScript<ClaimReply>(
        redis,
        claimScript,
        [prefix + key],
        [fingerprint, token, Math.ceil(leaseMs), Math.ceil(retentionMs)],
      );
      return toOutcome(reply);
    },
    async peek(key, fingerprint) {
      const [s, f, e, r] = await redis.hmget(prefix + key, 's', 'f', 'e', 'r');
      if (!s) return undefined;
      if (f !== fingerprint) return { kind: 'mismatch' };
      if (s === 'd') return { kind: 'done', response: r ? decodeResponse(r) : null };
      const [sec, usec] = await redis.time();
      const left = Number(e) - (Number(sec) * 1000 + Math.floor(Number(usec) / 1000));
      return { kind: 'in_flight', leaseRemainingMs: Math.max(0, left) };
    },
    async renew(key, token, leaseMs) {
      const n = await runScript<number>(redis, renewScript, [prefix + key], [token, Math.ceil(leaseMs)]);
      return n === 1;
    },
    async complete(key, token, completion: Completion, retentionMs) {
      const encoded = completion.kind === 'store' ? encodeResponse(completion.response) : '';
      const n = await runScript<number>(
        redis,
        completeScript,
        [prefix + key],
        [token, 'store', encoded, Math.ceil(retentionMs)],
      );
      return n === 1;
    },
    async release(key, token) {
      const n = await runScript<number>(redis, completeScript, [prefix + key], [token, 'release', '', 0]);
      return n === 1;
    },
  };
}
