/**
 * The contract between the idempotency engine and a record store (Redis, PostgreSQL).
 *
 * A record has two lives: while a request runs it is an in-flight claim with a short lease owned
 * by a random token; once the handler answers it becomes a stored result kept for the retention
 * period. Every write after the claim names the token, so an owner that lost its lease (paused,
 * partitioned, slow) can never overwrite what the new owner wrote.
 */

/** A response as kept for replay. */
export interface StoredResponse {
  status: number;
  /** Allow-listed headers only, lower-case names, in the order the handler set them. */
  headers: [string, string][];
  body: Uint8Array;
}

/** What a claim found. */
export type ClaimOutcome =
  /** The caller owns the key now and must run the handler; `takeover` when a dead owner's lease expired. */
  | { kind: 'claimed'; takeover: boolean }
  /** A finished request with the same fingerprint; `response` is null when it was not kept. */
  | { kind: 'done'; response: StoredResponse | null }
  /** The key was used with another payload. */
  | { kind: 'mismatch' }
  /** Another request holds a live lease; it ends in at most `leaseRemainingMs` unless renewed. */
  | { kind: 'in_flight'; leaseRemainingMs: number };

/** How a request ends for its record. */
export type Completion =
  /** Keep the response for replay. */
  | { kind: 'store'; response: StoredResponse }
  /** The request finished but its response cannot be replayed (too large, streamed). */
  | { kind: 'unreplayable'; status: number };

/**
 * A record store. `Tx` is the transaction type handed to handlers in transactional mode
 * (`never` for stores without one).
 *
 * @example
 * const store: IdempotencyStore = redisIdempotencyStore({ redis });
 */
export interface IdempotencyStore<Tx = never> {
  /** Short name for logs and metric labels (`redis`, `postgres`). */
  readonly name: string;
  /**
   * Claim `key` for `token`, or report what holds it. The fingerprint is compared first, so a
   * different payload is a mismatch even while the first request is still running.
   */
  claim(
    key: string,
    fingerprint: string,
    token: string,
    leaseMs: number,
    retentionMs: number,
  ): Promise<ClaimOutcome>;
  /** Read the record without claiming; `undefined` when there is none. */
  peek(key: string, fingerprint: string): Promise<ClaimOutcome | undefined>;
  /** Extend the lease; false when `token` no longer owns the key. */
  renew(key: string, token: string, leaseMs: number): Promise<boolean>;
  /**
   * Compare-and-set completion: writes only while `token` still owns the in-flight record.
   * With `tx`, the write happens inside it and the transaction commits (true) or rolls back (false).
   */
  complete(
    key: string,
    token: string,
    completion: Completion,
    retentionMs: number,
    tx?: Tx,
  ): Promise<boolean>;
  /** Delete the in-flight record if `token` still owns it, so a retry may run. */
  release(key: string, token: string): Promise<boolean>;
  /** Transactional stores: open a transaction for the handler's own writes. */
  begin?(): Promise<Tx>;
  /** Commit without touching any record (fail-open mode). */
  commit?(tx: Tx): Promise<void>;
  rollback?(tx: Tx): Promise<void>;
}

/**
 * Encode a response for a store that keeps one opaque string.
 *
 * @example
 * const text = encodeResponse({ status: 201, headers: [['content-type', 'application/json']], body });
 */
export function encodeResponse(r: StoredResponse): string {
  return JSON.stringify({ s: r.status, h: r.headers, b: Buffer.from(r.body).toString('base64') });
}

/**
 * Inverse of {@link encodeResponse}.
 *
 * @example
 * const { status, headers, body } = decodeResponse(text);
 */
export function decodeResponse(text: string): StoredResponse {
  const o = JSON.parse(text) as { s: number; h: [string, string][]; b: string };
  return { status: o.s, headers: o.h, body: Buffer.from(o.b, 'base64') };
}
