/**
 * The `Idempotency-Key` request header: an RFC 8941 structured-field String, e.g.
 * `Idempotency-Key: "8e03978e-40d5-43e8-bc93-6894a57f9324"`.
 *
 * Why strict: a key is only useful if every instance and every retry agrees on its exact value;
 * accepting loose forms (bare tokens, odd escapes) invites two spellings of one key.
 */

/**
 * Longest accepted key, in characters of the decoded string.
 *
 * @example
 * createIdempotency({ store, maxKeyLength: Math.min(64, MAX_IDEMPOTENCY_KEY_LENGTH) });
 */
export const MAX_IDEMPOTENCY_KEY_LENGTH = 255;

/** Result of {@link parseIdempotencyKey}. */
export type ParsedKey =
  | { ok: true; key: string }
  | { ok: false; reason: 'missing' | 'malformed'; detail: string };

/**
 * Parse the header value. Missing or blank -> `missing`; anything but one sf-string of 1..255
 * printable ASCII characters (surrounding spaces allowed, parameters not) -> `malformed`.
 *
 * @example
 * parseIdempotencyKey('"order-42"');  // { ok: true, key: 'order-42' }
 * parseIdempotencyKey('order-42');    // { ok: false, reason: 'malformed', ... }
 */
export function parseIdempotencyKey(
  header: string | null | undefined,
  maxLength = MAX_IDEMPOTENCY_KEY_LENGTH,
): ParsedKey {
  if (header === undefined || header === null || header.trim() === '') {
    return { ok: false, reason: 'missing', detail: 'this endpoint requires an Idempotency-Key header' };
  }
  const s = header.replace(/^ +| +$/g, '');
  if (s.charCodeAt(0) !== 0x22) {
    return {
      ok: false,
      reason: 'malformed',
      detail: 'Idempotency-Key must be a structured-field string in double quotes, e.g. "3f2a-..."',
    };
  }
  let key = '';
  let i = 1;
  for (; i < s.length; i++) {
    const ch = s.charCodeAt(i);
    if (ch === 0x5c) {
      const next = s.charCodeAt(i + 1);
      if (next !== 0x22 && next !== 0x5c) {
        return { ok: false, reason: 'malformed', detail: 'only \\" and \\\\ escapes are allowed in the key' };
      }
      key += s[i + 1];
      i++;
      continue;
    }
    if (ch === 0x22) break;
    if (ch < 0x20 || ch > 0x7e) {
      return { ok: false, reason: 'malformed', detail: 'the key may hold printable ASCII characters only' };
    }
    key += s[i];
  }
  if (i >= s.length) return { ok: false, reason: 'malformed', detail: 'the key string is not closed' };
  if (i !== s.length - 1) {
    return { ok: false, reason: 'malformed', detail: 'nothing may follow the quoted key' };
  }
  if (key.length === 0) return { ok: false, reason: 'malformed', detail: 'the key is empty' };
  if (key.length > maxLength) {
    return {
      ok: false,
      reason: 'malformed',
      detail: `the key is ${key.length} characters long; at most ${maxLength} are allowed`,
    };
  }
  return { ok: true, key };
}
