/**
 * Request ids: accept the caller's `X-Request-Id` when it is safe to log and echo, otherwise mint one.
 */
import { randomUUID } from 'node:crypto';

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
 * Return the incoming request id when well-formed, else a new random UUID.
 * A malformed id is replaced rather than cleaned, so a log line never carries attacker-shaped text.
 *
 * @example
 * const id = acceptRequestId(req.headers.get('x-request-id'));
 * res.headers.set('x-request-id', id);
 */
export function acceptRequestId(header: string | null | undefined): string {
  if (header && header.length <= 128 && WELL_FORMED.test(header)) return header;
  return randomUUID();
}
