/**
 * Redis key layout. Every key carries a hash tag so a multi-key script is valid on Redis Cluster:
 * - `shared` (default): one tag for all rate-limit keys of a limiter, so every decision is one
 *   script on one node (fully atomic, but all rate-limit keys live in one slot);
 * - `spread`: the tag is the (limit, subject) pair, so keys spread over the cluster and a decision
 *   whose keys fall in several slots uses charge-then-refund (see limiter.ts).
 * Subjects longer than a bound, or containing characters that would break the tag, are replaced by
 * a SHA-256 digest: raw tokens or long identities never land in Redis.
 */
import { createHash } from 'node:crypto';
import { ShoalError } from '../errors.js';

/** How rate-limit keys are tagged; see the module comment. */
export type KeyMode = 'shared' | 'spread';

const NAME = /^[A-Za-z0-9._-]{1,64}$/;

/**
 * Validate a limit or context name (used in keys, metrics labels and URLs).
 *
 * @example
 * assertName('orders-write'); // ok; assertName('a b') throws
 */
export function assertName(name: string, what = 'limit name'): string {
  if (!NAME.test(name)) {
    throw new ShoalError(
      'ratelimit.invalid_limit',
      `${what} ${JSON.stringify(name)}: expected 1-64 characters from A-Z a-z 0-9 . _ -`,
    );
  }
  return name;
}

/**
 * The stored form of a subject: itself when short and plain, else `#` + a digest.
 *
 * @example
 * subjectOf('203.0.113.9', 64);   // '203.0.113.9'
 * subjectOf('x'.repeat(500), 64); // '#' + 27 base64url characters
 */
export function subjectOf(raw: string, maxLength: number): string {
  if (raw.length <= maxLength && isPlain(raw)) return raw;
  return '#' + createHash('sha256').update(raw).digest('base64url').slice(0, 27);
}

const SPACE = /\s/;

/**
 * No braces (a hash tag would move the key's Cluster slot), no `#` (reserved for digests), no
 * whitespace or control characters. A loop: on the short strings subjects are, a regular
 * expression's call costs more than the scan (this runs once per limit of every decision).
 */
function isPlain(s: string): boolean {
  for (let i = 0; i < s.length; i++) {
    const c = s.charCodeAt(i);
    if (c <= 0x20 || c === 0x7f || c === 0x23 || c === 0x7b || c === 0x7d) return false;
    // the other whitespace of \s, all above ASCII
    if (c > 0x7f && SPACE.test(s[i]!)) return false;
  }
  return true;
}

/** Builds state keys, the config keys and the pub/sub channel for one limiter prefix. */
export class KeySpace {
  constructor(
    readonly prefix: string,
    readonly mode: KeyMode,
  ) {}

  /**
   * The state key of (limit, stored subject).
   *
   * @example
   * new KeySpace('rl:', 'shared').state('ip', '1.2.3.4'); // 'rl:{rl}ip:1.2.3.4'
   */
  state(limit: string, subject: string): string {
    return this.mode === 'shared'
      ? `${this.prefix}{rl}${limit}:${subject}`
      : `${this.prefix}{${limit}:${subject}}`;
  }

  /** Hash of per-limit (context) overrides. */
  get contexts(): string {
    return `${this.prefix}{cfg}ctx`;
  }

  /** Hash of per-identity overrides. */
  get identities(): string {
    return `${this.prefix}{cfg}id`;
  }

  /** Monotonic version of the whole runtime configuration. */
  get version(): string {
    return `${this.prefix}{cfg}ver`;
  }

  /** Channel announcing a new configuration version or an invalidated key. */
  get channel(): string {
    return `${this.prefix}{cfg}events`;
  }
}

// CRC16/XMODEM as Redis Cluster uses it, to group a decision's keys by slot without a round trip.
const CRC_TABLE = (() => {
  const table = new Uint16Array(256);
  for (let i = 0; i < 256; i++) {
    let crc = i << 8;
    for (let j = 0; j < 8; j++) crc = crc & 0x8000 ? ((crc << 1) ^ 0x1021) & 0xffff : (crc << 1) & 0xffff;
    table[i] = crc;
  }
  return table;
})();

/**
 * The Redis Cluster slot of a key (honours `{hash tags}`).
 *
 * @example
 * keySlot('{user1000}.following') === keySlot('{user1000}.followers'); // true
 */
export function keySlot(key: string): number {
  let s = Buffer.from(key);
  const open = s.indexOf(0x7b);
  if (open !== -1) {
    const close = s.indexOf(0x7d, open + 1);
    if (close > open + 1) s = s.subarray(open + 1, close);
  }
  let crc = 0;
  for (const byte of s) crc = ((crc << 8) & 0xffff) ^ CRC_TABLE[((crc >> 8) ^ byte) & 0xff]!;
  return crc % 16384;
}
