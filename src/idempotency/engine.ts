/**
 * The framework-agnostic idempotency engine: parse the key, fingerprint the request, claim,
 * run the handler under a renewed lease, complete by compare-and-set, replay.
 * Adapters (Hono, node:http) only translate requests and responses.
 */
import { randomUUID } from 'node:crypto';
import type { Registry } from 'prom-client';
import { type Logger, silentLogger } from '../contracts/index.js';
import { problem, problemResponse, ShoalError, type ShoalErrorCode } from '../errors.js';
import { DueQueue } from '../util/due-queue.js';
import { type FingerprintFields, requestFingerprint } from './fingerprint.js';
import { MAX_IDEMPOTENCY_KEY_LENGTH, parseIdempotencyKey } from './key.js';
import { type IdempotencyMetrics, idempotencyMetrics } from './metrics.js';
import type { ClaimOutcome, Completion, IdempotencyStore, StoredResponse } from './store.js';

/**
 * Headers replayed by default; others only when listed in `replayHeaders`.
 *
 * @example
 * createIdempotency({ store, replayHeaders: ['x-order-id'] }); // replays DEFAULT_REPLAY_HEADERS + x-order-id
 */
export const DEFAULT_REPLAY_HEADERS: readonly string[] = ['content-type', 'location', 'etag'];

/**
 * Default stored statuses: 2xx and 4xx except 409 and 429 (5xx are not stored, so clients may retry).
 *
 * @example
 * createIdempotency({ store, storeStatus: (s) => s !== 404 && defaultStoreStatus(s) });
 */
export function defaultStoreStatus(status: number): boolean {
  return (
    (status >= 200 && status < 300) || (status >= 400 && status < 500 && status !== 409 && status !== 429)
  );
}

/** Options for {@link createIdempotency}. */
export interface IdempotencyOptions<Tx = never> {
  /** Where records live: `redisIdempotencyStore(...)` (default choice) or `postgresIdempotencyStore(...)`. */
  store: IdempotencyStore<Tx>;
  /** Lease of an in-flight claim (default 30 s); renewed while the handler runs. */
  leaseMs?: number;
  /** Renewal period (default a third of the lease). */
  renewEveryMs?: number;
  /** How long results are kept for replay (default 24 h). */
  retentionMs?: number;
  /** Deadline of each store call (default 1000 ms); a miss counts as the store being down. */
  storeTimeoutMs?: number;
  /** Store down or past its deadline: `fail-closed` (default: 503, handler not run) or `fail-open` (run unprotected). */
  onStoreError?: 'fail-closed' | 'fail-open';
  /**
   * Same key still in flight: `conflict` (default: 409 with Retry-After) or wait up to `waitMs`
   * for the first request's result and replay it (409 if it does not arrive in time).
   */
  whileInFlight?: 'conflict' | { waitMs: number; pollMs?: number };
  /** Body fields that take part in the fingerprint. */
  fields?: FingerprintFields;
  /** Extra response headers to replay (lower or mixed case). `set-cookie` is never replayed. */
  replayHeaders?: readonly string[];
  /** Which statuses are stored; others release the key (and roll back a transaction). */
  storeStatus?: (status: number) => boolean;
  /** Largest response body kept for replay (default 1 MiB). */
  maxResponseBytes?: number;
  /** Content types that are streamed through and never buffered (default `text/event-stream`). */
  streamingTypes?: readonly string[];
  /** Longest key (default 255). */
  maxKeyLength?: number;
  /** prom-client Registry for the metrics; none -> no metrics. */
  registry?: Registry;
  logger?: Logger;
}

/** What an adapter hands to {@link Idempotency.handle}. */
export interface IdempotentRequest {
  /** Raw `Idempotency-Key` header value. */
  keyHeader: string | null | undefined;
  method: string;
  /** The target the key applies to: path and query. */
  route: string;
  /** The client scope (identity, or IP when unauthenticated); read only when a key is present. */
  scope: () => string | Promise<string>;
  contentType?: string | undefined;
  /** The request body; read only when a key is present. */
  body: () => Promise<string | Uint8Array>;
  /** A missing key is a 400 (default true); false runs the handler unprotected. */
  required?: boolean;
}

/** What a handler sees about the current request (`c.var.idempotency` in Hono). */
export interface IdempotencyContext<Tx = never> {
  /** The client's key, or undefined when optional and absent. */
  readonly key: string | undefined;
  /** True when the request is protected by a claim (false when unkeyed or failing open). */
  readonly protected: boolean;
  /**
   * The request's database transaction (transactional stores only). Opened on first call; the
   * same one on every call. Do not COMMIT or ROLLBACK it: it commits together with the stored
   * response, and rolls back when the handler throws or answers with a status that is not stored.
   */
  tx(): Promise<Tx>;
  /** True once a renewal found that another instance took the key over. */
  leaseLost(): boolean;
}

/** An engine built by {@link createIdempotency}. */
export interface Idempotency<Tx = never> {
  readonly store: IdempotencyStore<Tx>;
  /** Run `handler` at most once per (scope, key); see the docs for every outcome. */
  handle(
    req: IdempotentRequest,
    handler: (ctx: IdempotencyContext<Tx>) => Promise<Response>,
  ): Promise<Response>;
}

const NULL_BODY = new Set([101, 204, 205, 304]);

function problemOf(
  status: number,
  slug: string,
  title: string,
  code: ShoalErrorCode,
  detail: string,
  headers?: Record<string, string>,
): Response {
  return problemResponse(problem(status, slug, title, { detail, code }), headers);
}

/** Scope and key joined so that no (scope, key) pair can spell another one. */
function scopedKey(scope: string, key: string): string {
  return `${scope.length}:${scope}|${key}`;
}

const encoder = new TextEncoder();
// What @hono/node-server's lightweight Response writes when it holds a body but no headers.
const NODE_SERVER_DEFAULT_TYPE = 'text/plain; charset=UTF-8';

/** A response whose status, body and headers are held in memory. */
interface HeldResponse {
  body: Uint8Array;
  /** Every header, lower-case names. */
  headers: [string, string][];
}

/**
 * Body and headers of a response that already holds them in memory, without turning it into a
 * stream or its header record into a `Headers` object.
 * Why: @hono/node-server's lightweight Response keeps `[status, body, headers]` under a private
 * symbol and only builds a real (stream-backed) Response when `.body` is touched; touching
 * `.headers` converts a plain header record into `Headers`, which also moves the write of the
 * response off the server's fast path. Reading the cache directly lets the original response go
 * out untouched. Any other shape returns undefined and takes the generic path, so this is a
 * speed-up, never a dependency.
 */
function heldResponse(res: Response, cacheSymbol: { sym?: symbol }): HeldResponse | undefined {
  let sym = cacheSymbol.sym;
  if (sym === undefined || !Object.hasOwn(res, sym)) {
    sym = undefined;
    for (const s of Object.getOwnPropertySymbols(res)) {
      if (s.description === 'cache') {
        sym = s;
        cacheSymbol.sym = s;
        break;
      }
    }
    if (sym === undefined) return undefined;
  }
  const cache = (res as unknown as Record<symbol, unknown>)[sym];
  if (!Array.isArray(cache)) return undefined;
  const raw = cache[1];
  let body: Uint8Array;
  if (typeof raw === 'string') body = encoder.encode(raw);
  else if (raw instanceof Uint8Array) body = raw;
  else if (raw === null) body = new Uint8Array(0);
  else return undefined;
  const init = cache[2];
  const headers: [string, string][] = [];
  if (init === undefined || init === null) {
    if (raw !== null) headers.push(['content-type', NODE_SERVER_DEFAULT_TYPE]);
  } else if (init instanceof Headers) {
    init.forEach((value, name) => {
      headers.push([name, value]);
    });
  } else if (typeof init === 'object' && !Array.isArray(init)) {
    const seen = new Set<string>();
    for (const name in init as Record<string, unknown>) {
      const value = (init as Record<string, unknown>)[name];
      const lower = name.toLowerCase();
      // Values that Headers would join or coerce: let the generic path decide.
      if (typeof value !== 'string' || seen.has(lower)) return undefined;
      seen.add(lower);
      headers.push([lower, value]);
    }
  } else return undefined;
  return { body, headers };
}

async function bufferBody(
  res: Response,
  max: number,
): Promise<{ body: Uint8Array } | { overflow: Response; seen: number }> {
  if (!res.body) return { body: new Uint8Array(0) };
  const declared = Number(res.headers.get('content-length') ?? Number.NaN);
  if (declared > max) return { overflow: res, seen: declared };
  const reader = res.body.getReader();
  const chunks: Uint8Array[] = [];
  let size = 0;
  for (;;) {
    const { done, value } = await reader.read();
    if (done) break;
    chunks.push(value);
    size += value.byteLength;
    if (size > max) {
      // Too big to keep: hand the client what was read plus the rest, unbuffered.
      const rest = new ReadableStream<Uint8Array>({
        start(ctrl) {
          for (const c of chunks) ctrl.enqueue(c);
        },
        async pull(ctrl) {
          const r = await reader.read();
          if (r.done) ctrl.close();
          else ctrl.enqueue(r.value);
        },
        cancel(reason) {
          return reader.cancel(reason);
        },
      });
      return {
        overflow: new Response(rest, {
          status: res.status,
          statusText: res.statusText,
          headers: res.headers,
        }),
        seen: size,
      };
    }
  }
  if (chunks.length === 1) return { body: chunks[0]! };
  const body = new Uint8Array(size);
  let at = 0;
  for (const c of chunks) {
    body.set(c, at);
    at += c.byteLength;
  }
  return { body };
}

/**
 * Build an idempotency engine over a store. Adapters call `handle()`; the Hono middleware is
 * `idempotency(engine)` from `shoal/hono`.
 *
 * @example
 * const idem = createIdempotency({
 *   store: redisIdempotencyStore({ redis }),
 *   registry,            // prom-client Registry
 *   logger,
 * });
 */
export function createIdempotency<Tx = never>(options: IdempotencyOptions<Tx>): Idempotency<Tx> {
  const store = options.store;
  const leaseMs = options.leaseMs ?? 30_000;
  const renewEveryMs = options.renewEveryMs ?? Math.max(50, Math.floor(leaseMs / 3));
  const retentionMs = options.retentionMs ?? 24 * 3_600_000;
  const storeTimeoutMs = options.storeTimeoutMs ?? 1000;
  const policy = options.onStoreError ?? 'fail-closed';
  const wait =
    options.whileInFlight === undefined || options.whileInFlight === 'conflict'
      ? undefined
      : options.whileInFlight;
  const storeStatus = options.storeStatus ?? defaultStoreStatus;
  const maxBytes = options.maxResponseBytes ?? 1024 * 1024;
  const maxKeyLength = options.maxKeyLength ?? MAX_IDEMPOTENCY_KEY_LENGTH;
  const streaming = (options.streamingTypes ?? ['text/event-stream']).map((t) => t.toLowerCase());
  const log = (options.logger ?? silentLogger).child({ component: 'idempotency', store: store.name });
  const fields = options.fields ?? {};
  if (!(leaseMs > 0) || !(retentionMs >= leaseMs) || !(renewEveryMs > 0 && renewEveryMs < leaseMs)) {
    throw new ShoalError(
      'config.invalid',
      `idempotency: need leaseMs > 0, renewEveryMs < leaseMs and retentionMs >= leaseMs (got ${leaseMs}, ${renewEveryMs}, ${retentionMs})`,
    );
  }
  const allowed = new Set(
    [...DEFAULT_REPLAY_HEADERS, ...(options.replayHeaders ?? [])].map((h) => h.toLowerCase()),
  );
  if (allowed.has('set-cookie') || allowed.has('set-cookie2')) {
    throw new ShoalError(
      'config.invalid',
      'idempotency: replayHeaders may not include set-cookie (a replay must not hand out a session)',
    );
  }
  const metrics: IdempotencyMetrics | undefined = options.registry
    ? idempotencyMetrics(options.registry)
    : undefined;
  const label = { store: store.name };
  const cacheSymbol: { sym?: symbol } = {};

  // Label objects built once: the histogram hashes them on every observation anyway.
  const opLabels: Record<string, { store: string; op: string }> = {};
  const labelsOf = (op: string) => (opLabels[op] ??= { store: store.name, op });

  // Store-call deadlines share one engine-owned timer (every call has the same timeout).
  interface Pending {
    due: number;
    expire: () => void;
  }
  const pending = new DueQueue<Pending>((p) => p.expire());

  function timed<T>(op: string, fn: () => Promise<T>): Promise<T> {
    const start = performance.now();
    return new Promise<T>((resolve, reject) => {
      let settled = false;
      const entry: Pending = {
        due: start + storeTimeoutMs,
        expire: () => {
          if (settled) return;
          settled = true;
          metrics?.storeLatency.observe(labelsOf(op), (performance.now() - start) / 1000);
          reject(new ShoalError('store.timeout', `idempotency store ${op} exceeded ${storeTimeoutMs} ms`));
        },
      };
      pending.add(entry);
      const finish = (ok: boolean, value: unknown) => {
        if (settled) return;
        settled = true;
        pending.delete(entry);
        metrics?.storeLatency.observe(labelsOf(op), (performance.now() - start) / 1000);
        if (ok) resolve(value as T);
        else reject(value);
      };
      let p: Promise<T>;
      try {
        p = fn();
      } catch (err) {
        finish(false, err);
        return;
      }
      p.then(
        (v) => finish(true, v),
        (err) => finish(false, err),
      );
    });
  }

  // Lease renewal for every running handler, driven by one timer owned by this engine instead of
  // one interval per request (all leases share one period).
  interface Running {
    recordKey: string;
    token: string;
    key: string;
    due: number;
    lost: boolean;
  }
  const running = new DueQueue<Running>((run, now) => {
    run.due = now + renewEveryMs;
    running.add(run);
    timed('renew', () => store.renew(run.recordKey, run.token, leaseMs)).then(
      (ok) => {
        if (!ok && !run.lost) {
          run.lost = true;
          running.delete(run);
          log.warn({ key: run.key }, 'idempotency lease lost while the handler ran');
        }
      },
      (err) => log.warn({ key: run.key, err: (err as Error).message }, 'idempotency lease renewal failed'),
    );
  });

  function storeFailed(op: string, err: unknown, failOpen: boolean): void {
    metrics?.storeErrors.inc({ store: store.name, op, policy: failOpen ? 'fail-open' : 'fail-closed' });
    log.error(
      { op, policy: failOpen ? 'fail-open' : 'fail-closed', err: (err as Error)?.message ?? String(err) },
      failOpen
        ? 'idempotency store unavailable; running the handler unprotected'
        : 'idempotency store unavailable; rejecting with 503',
    );
  }

  function unavailable(): Response {
    return problemOf(
      503,
      'idempotency-store-unavailable',
      'Service Unavailable',
      'idempotency.store_unavailable',
      'the idempotency store is unavailable; retry with the same Idempotency-Key',
      { 'retry-after': '1' },
    );
  }

  function inFlight(leaseRemainingMs: number): Response {
    metrics?.conflicts.inc(label);
    return problemOf(
      409,
      'idempotency-in-flight',
      'Conflict',
      'idempotency.in_flight',
      'a request with this Idempotency-Key is still being processed; retry later',
      { 'retry-after': String(Math.max(1, Math.ceil(leaseRemainingMs / 1000))) },
    );
  }

  function replay(response: StoredResponse | null): Response {
    if (!response) {
      metrics?.conflicts.inc(label);
      return problemOf(
        409,
        'idempotency-result-unavailable',
        'Conflict',
        'idempotency.result_unavailable',
        'the request with this Idempotency-Key was processed, but its response was not kept (streamed or too large)',
      );
    }
    metrics?.replays.inc(label);
    const headers = new Headers(response.headers);
    headers.set('idempotency-replayed', 'true');
    return new Response(NULL_BODY.has(response.status) ? null : response.body, {
      status: response.status,
      headers,
    });
  }

  function answer(outcome: Exclude<ClaimOutcome, { kind: 'claimed' }>): Response {
    if (outcome.kind === 'mismatch') {
      metrics?.mismatches.inc(label);
      return problemOf(
        422,
        'idempotency-key-reused',
        'Unprocessable Content',
        'idempotency.payload_mismatch',
        'this Idempotency-Key was already used with a different request payload',
      );
    }
    if (outcome.kind === 'done') return replay(outcome.response);
    return inFlight(outcome.leaseRemainingMs);
  }

  async function runUnprotected(
    key: string | undefined,
    handler: (ctx: IdempotencyContext<Tx>) => Promise<Response>,
  ): Promise<Response> {
    let tx: Promise<Tx> | undefined;
    const ctx: IdempotencyContext<Tx> = {
      key,
      protected: false,
      tx: () => (tx ??= begin()),
      leaseLost: () => false,
    };
    let res: Response;
    try {
      res = await handler(ctx);
    } catch (err) {
      if (tx) await settle(tx, 'rollback');
      throw err;
    }
    if (tx) await settle(tx, storeStatus(res.status) ? 'commit' : 'rollback');
    return res;
  }

  function begin(): Promise<Tx> {
    if (!store.begin) {
      return Promise.reject(
        new ShoalError(
          'config.invalid',
          `idempotency: the ${store.name} store has no transactions; use the postgres store`,
        ),
      );
    }
    return store.begin();
  }

  async function settle(tx: Promise<Tx>, how: 'commit' | 'rollback'): Promise<void> {
    let t: Tx;
    try {
      t = await tx;
    } catch {
      return; // never opened
    }
    const fn = how === 'commit' ? store.commit : store.rollback;
    await fn?.call(store, t);
  }

  async function release(recordKey: string, token: string, tx: Promise<Tx> | undefined): Promise<void> {
    if (tx)
      await settle(tx, 'rollback').catch((err) =>
        log.warn({ err: (err as Error).message }, 'rollback failed'),
      );
    try {
      await timed('release', () => store.release(recordKey, token));
    } catch (err) {
      // The lease still expires, so the key frees itself; only the wait is longer.
      metrics?.storeErrors.inc({ store: store.name, op: 'release', policy });
      log.warn(
        { err: (err as Error).message },
        'idempotency release failed; the key frees itself when the lease expires',
      );
    }
  }

  async function execute(
    key: string,
    recordKey: string,
    fingerprint: string,
    token: string,
    takeover: boolean,
    handler: (ctx: IdempotencyContext<Tx>) => Promise<Response>,
  ): Promise<Response> {
    metrics?.claims.inc(label);
    if (takeover) {
      metrics?.takeovers.inc(label);
      log.info({ key }, 'idempotency lease expired; this instance took the key over');
    }
    let tx: Promise<Tx> | undefined;
    const run: Running = { recordKey, token, key, due: performance.now() + renewEveryMs, lost: false };
    const ctx: IdempotencyContext<Tx> = {
      key,
      protected: true,
      tx: () => (tx ??= begin()),
      leaseLost: () => run.lost,
    };
    running.add(run);

    let res: Response;
    try {
      res = await handler(ctx);
    } catch (err) {
      running.delete(run);
      await release(recordKey, token, tx);
      throw err;
    }
    running.delete(run);

    if (!storeStatus(res.status)) {
      metrics?.notStored.inc({ reason: 'status' });
      await release(recordKey, token, tx);
      return res;
    }
    let completion: Completion;
    let out: Response;
    const held = heldResponse(res, cacheSymbol);
    let type = '';
    if (held) {
      for (const [name, value] of held.headers) if (name === 'content-type') type = value.toLowerCase();
    } else type = (res.headers.get('content-type') ?? '').toLowerCase();
    if (streaming.some((t) => type.startsWith(t))) {
      metrics?.notStored.inc({ reason: 'streaming' });
      log.info({ key, status: res.status }, 'idempotency: streamed response is not kept; retries get 409');
      completion = { kind: 'unreplayable', status: res.status };
      out = res;
    } else if (held && held.body.byteLength <= maxBytes) {
      // Already in memory: keep it and send the original response as it is.
      const headers: [string, string][] = [];
      for (const h of held.headers) if (allowed.has(h[0])) headers.push(h);
      completion = { kind: 'store', response: { status: res.status, headers, body: held.body } };
      out = res;
    } else {
      let buffered: Awaited<ReturnType<typeof bufferBody>>;
      try {
        buffered = await bufferBody(res, maxBytes);
      } catch (err) {
        // The body failed mid-read: treat it like a handler failure.
        await release(recordKey, token, tx);
        throw err;
      }
      if ('overflow' in buffered) {
        metrics?.notStored.inc({ reason: 'too_large' });
        log.warn(
          { key, status: res.status, bytes: buffered.seen, max: maxBytes },
          'idempotency: response larger than maxResponseBytes is not kept; retries get 409',
        );
        completion = { kind: 'unreplayable', status: res.status };
        out = buffered.overflow;
      } else {
        const headers: [string, string][] = [];
        res.headers.forEach((value, name) => {
          if (allowed.has(name)) headers.push([name, value]);
        });
        completion = { kind: 'store', response: { status: res.status, headers, body: buffered.body } };
        out = new Response(NULL_BODY.has(res.status) ? null : buffered.body, {
          status: res.status,
          statusText: res.statusText,
          headers: res.headers,
        });
      }
    }

    let txValue: Tx | undefined;
    if (tx) {
      try {
        txValue = await tx;
      } catch {
        txValue = undefined;
      }
    }
    let owned: boolean;
    try {
      owned = await timed('complete', () =>
        store.complete(recordKey, token, completion, retentionMs, txValue),
      );
    } catch (err) {
      metrics?.storeErrors.inc({ store: store.name, op: 'complete', policy });
      if (txValue !== undefined) {
        log.error(
          { key, err: (err as Error).message },
          'idempotency completion failed; the transaction outcome is unknown',
        );
        // If the commit did not happen this frees the key; if it did, the row is no longer in flight and stays.
        void timed('release', () => store.release(recordKey, token)).catch(() => {});
        return unavailable();
      }
      log.error(
        { key, err: (err as Error).message },
        'idempotency result not stored; the key stays in flight until its lease expires',
      );
      return out;
    }
    if (owned) return out;

    metrics?.leaseLost.inc(label);
    log.warn({ key }, 'idempotency lease was taken over; this result was not stored');
    if (txValue === undefined) return out;
    // The handler's writes were rolled back with the refused completion: answer with what stands.
    try {
      const now = await timed('peek', () => store.peek(recordKey, fingerprint));
      if (now?.kind === 'done' || now?.kind === 'in_flight') return answer(now);
    } catch {
      // fall through
    }
    return inFlight(1000);
  }

  return {
    store,
    async handle(req, handler) {
      const parsed = parseIdempotencyKey(req.keyHeader, maxKeyLength);
      if (!parsed.ok) {
        if (parsed.reason === 'missing' && req.required === false) return runUnprotected(undefined, handler);
        metrics?.rejected.inc({ reason: parsed.reason });
        return parsed.reason === 'missing'
          ? problemOf(400, 'idempotency-key-missing', 'Bad Request', 'idempotency.key_missing', parsed.detail)
          : problemOf(
              400,
              'idempotency-key-malformed',
              'Bad Request',
              'idempotency.key_malformed',
              parsed.detail,
            );
      }
      const key = parsed.key;
      // The scope is usually computed synchronously: no Promise.all round for it then.
      const scopeOrPromise = req.scope();
      let scope: string;
      let body: string | Uint8Array;
      if (typeof scopeOrPromise === 'string') {
        scope = scopeOrPromise;
        body = await req.body();
      } else [scope, body] = await Promise.all([scopeOrPromise, req.body()]);
      const fingerprint = requestFingerprint(
        { method: req.method, route: req.route, body, contentType: req.contentType },
        fields,
      );
      const recordKey = scopedKey(scope, key);
      const token = randomUUID();
      const claim = () =>
        timed('claim', () => store.claim(recordKey, fingerprint, token, leaseMs, retentionMs));

      let outcome: ClaimOutcome;
      try {
        outcome = await claim();
        if (wait && outcome.kind === 'in_flight') {
          const until = performance.now() + wait.waitMs;
          let pause = wait.pollMs ?? 25;
          while (outcome.kind === 'in_flight' && performance.now() < until) {
            await new Promise((r) => setTimeout(r, Math.min(pause, Math.max(1, until - performance.now()))));
            pause = Math.min(pause * 1.5, 250);
            outcome = await claim();
          }
        }
      } catch (err) {
        storeFailed('claim', err, policy === 'fail-open');
        return policy === 'fail-open' ? runUnprotected(key, handler) : unavailable();
      }
      if (outcome.kind === 'claimed')
        return execute(key, recordKey, fingerprint, token, outcome.takeover, handler);
      return answer(outcome);
    },
  };
}
