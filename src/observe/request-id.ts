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

const HEX_DIGITS = '0123456789abcdef';
// Immutable lookup table: the two hex digits of each byte value.
const HEX_BYTES: readonly string[] = Array.from({ length: 256 }, (_, i) => i.toString(16).padStart(2, '0'));

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
  const tail = seed.toString('hex', 4, 10);
  let lastMs = -1;
  let head = '';
  return () => {
    const now = Date.now();
    if (now !== lastMs) {
      lastMs = now;
      const ms = now.toString(16).padStart(12, '0');
      head = `${ms.slice(0, 8)}-${ms.slice(8)}-7`;
    }
    counter = (counter + 1) & 0x3ffffff;
    // 12 counter bits in rand_a; the variant bits (10) and 14 more counter bits lead rand_b.
    const a = counter >>> 14;
    const b = 0x8000 | (counter & 0x3fff);
    return `${head}${HEX_DIGITS[a >>> 8]}${HEX_BYTES[a & 255]}-${HEX_BYTES[b >>> 8]}${HEX_BYTES[b & 255]}-${tail}`;
  };
}
