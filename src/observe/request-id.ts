/**
 * Request ids: accept the caller's `X-Request-Id` when it is safe to log and echo, otherwise mint one.
 */
import { randomBytes, randomUUID } from 'node:crypto';

/** The header a request id travels in, lower-cased as Node and fetch `Headers` report it. */
export const REQUEST_ID_HEADER = 'x-request-id';

// Printable, header-safe and log-safe: no spaces, no CR/LF (header injection), no quotes
// (log forging); long enough for UUIDs, W3C trace ids and most balancer formats.
const WELL_FORMED = /^[A-Za-z0-9._:-]{1,128}$/;

/**
 * Whether a caller-supplied request id is accepted as is (1-128 characters of `A-Za-z0-9._:-`).
 *
 * @example
 * isWellFormedRequestId('req-42'); // true
 * isWellFormedRequestId('a b'); // false
 */
export function isWellFormedRequestId(value: string): boolean {
  return WELL_FORMED.test(value);
}

/**
 * Return the incoming request id when well-formed, else a new one from `mint` (default: a random
 * UUID). A malformed id is replaced rather than cleaned, so a log line never carries
 * attacker-shaped text.
 *
 * @example
 * const id = acceptRequestId(req.headers.get('x-request-id'));
 * res.headers.set('x-request-id', id);
 */
export function acceptRequestId(header: string | null | undefined, mint: () => string = randomUUID): string {
  if (header && header.length <= 128 && WELL_FORMED.test(header)) return header;
  return mint();
}

// Character codes of the 16 hex digits.
const HEX_CODES: readonly number[] = Array.from('0123456789abcdef', (c) => c.charCodeAt(0));

/**
 * A generator of request ids in UUIDv7 form (RFC 9562): the first 48 bits are the Unix time in
 * milliseconds, so ids sort by time in logs and indexes. The other 74 bits are a 26-bit counter
 * (randomly seeded, one step per id, RFC 9562's "dedicated counter" method) and 48 random bits
 * drawn once per generator. Two generators share an id only if they drew the same 48 bits and
 * met at the same counter value in the same millisecond. Several times cheaper than
 * `crypto.randomUUID()`, which matters when every request mints one; ids are unique, not secret.
 *
 * @example
 * const mint = createRequestIdMinter();
 * mint(); // '019ab3c2-7f41-7a3e-8c1d-5b2e9f0a4c7d'
 */
export function createRequestIdMinter(): () => string {
  const seed = randomBytes(10);
  let counter = seed.readUIntBE(0, 4) & 0x3ffffff;
  // The id's 36 character codes, updated in place: only the time digits (once per millisecond)
  // and the 7 counter digits change. The id is built from them in one step as a flat string; an
  // id concatenated from parts is a rope that Node's header code must flatten later, which
  // measured slower per request.
  const codes: number[] = Array.from(`00000000-0000-7000-8000-${seed.toString('hex', 4, 10)}`, (c) =>
    c.charCodeAt(0),
  );
  let lastMs = -1;
  const hex = HEX_CODES as number[];
  return () => {
    const now = Date.now();
    if (now !== lastMs) {
      lastMs = now;
      // 48 bits of milliseconds: 8 digits, a dash, 4 digits (past 32 bits, so no bit operators).
      let t = now;
      for (let i = 12; i >= 0; i--) {
        if (i === 8) continue;
        codes[i] = hex[t % 16] as number;
        t = Math.floor(t / 16);
      }
    }
    counter = (counter + 1) & 0x3ffffff;
    // 12 counter bits in rand_a (after the version digit); the variant bits (10) and 14 more
    // counter bits lead rand_b.
    const a = counter >>> 14;
    const b = 0x8000 | (counter & 0x3fff);
    codes[15] = hex[a >>> 8] as number;
    codes[16] = hex[(a >>> 4) & 15] as number;
    codes[17] = hex[a & 15] as number;
    codes[19] = hex[b >>> 12] as number;
    codes[20] = hex[(b >>> 8) & 15] as number;
    codes[21] = hex[(b >>> 4) & 15] as number;
    codes[22] = hex[b & 15] as number;
    return String.fromCharCode.apply(null, codes);
  };
}
