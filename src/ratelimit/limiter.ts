/**
 * The rate limiter: K limits decided in one atomic Redis script, with a local block cache, a
 * deadline, per-limit failure policies behind a circuit breaker, fleet-wide runtime overrides,
 * metrics and an audit log line per rejection.
 */

import { endianness } from 'node:os';
import { type Logger, silentLogger } from '../contracts/index.js';
import { ShoalError } from '../errors.js';
import type { RedisClient } from '../stores/redis/client.js';
import { type LuaScript, loadLuaFile, runScript } from '../stores/redis/scripts.js';
import { CircuitBreaker } from './breaker.js';
import { overrideSchema, RuntimeControl } from './control.js';
import { assertName, KeySpace, keySlot, subjectOf } from './keys.js';
import { LocalCounters } from './local.js';
import { BoundedLru } from './lru.js';
import { RateLimitMetrics } from './metrics.js';
import { formatRate, type Rate, toRate } from './parse.js';
import type {
  Algorithm,
  ContextOverride,
  Decision,
  FailurePolicy,
  LimitMode,
  LimitOptions,
  LimitResult,
  RateLimiterOptions,
  RuntimeSnapshot,
} from './types.js';

const ALG_CODE: Record<Algorithm, number> = { 'sliding-window': 1, gcra: 2, 'fixed-window': 3 };
const ALGORITHMS = Object.keys(ALG_CODE) as Algorithm[];
const LITTLE_ENDIAN = endianness() === 'LE';
const POLICIES: FailurePolicy[] = ['open', 'closed', 'local'];

/** A limit as configured at startup (validated). */
export interface LimitDefinition {
  name: string;
  rate: Rate;
  algorithm: Algorithm;
  burst: number;
  onStoreFailure: FailurePolicy;
  mode: LimitMode;
  identity: boolean;
}

/** One limit of one decision after runtime overrides are applied. */
interface Entry {
  def: LimitDefinition;
  subject: string;
  key: string;
  cacheKey: string;
  requests: number;
  windowMs: number;
  burst: number;
  mode: LimitMode;
  cost: number;
}

/** Raw per-limit script output. */
interface Verdict {
  ok: boolean;
  /** Redis time in ms of the decision (same for every limit of one script). */
  at?: number;
  remaining: number;
  resetMs: number;
  retryMs: number;
  retry1Ms: number;
  stamp: number;
}

/** Options of one {@link RateLimiter.check} call. */
export interface CheckOptions {
  /** Units this request consumes on every limit (default 1), or per limit name. */
  cost?: number | Record<string, number>;
}

/** What {@link RateLimiter.inspect} reports about one (limit, subject). */
export interface KeyState {
  limit: string;
  subject: string;
  remaining: number;
  resetMs: number;
  retryAfterMs: number;
  blocked: boolean;
  requests: number;
  windowMs: number;
  algorithm: Algorithm;
}

class DeadlineExceeded extends Error {}

/** Replies about the server's state, not about the script: these mean "Redis unavailable". */
const SERVER_STATE =
  /^(NOSCRIPT|BUSY|LOADING|READONLY|MASTERDOWN|CLUSTERDOWN|TRYAGAIN|MOVED|ASK|NOAUTH|WRONGPASS|NOPERM)\b/;

/** The ioredis Buffer-reply variants of EVAL/EVALSHA (present at runtime, not in its typings). */
interface BufferEval {
  evalshaBuffer(args: (string | number | Buffer)[]): Promise<Buffer>;
  evalBuffer(args: (string | number | Buffer)[]): Promise<Buffer>;
}

/**
 * How long a state key must outlive its last write. Static per limit, so the script never turns
 * numbers into text (slow inside Redis): a GCRA key is useless once its TAT has passed, which is
 * at most burst * interval after an admitted write; a sliding key holds W plus one sub-window.
 */
function stateTtlMs(e: {
  def: { algorithm: Algorithm };
  windowMs: number;
  burst: number;
  requests: number;
}): number {
  if (e.def.algorithm === 'gcra') return Math.ceil((e.burst * e.windowMs) / e.requests) + 1;
  if (e.def.algorithm === 'fixed-window') return e.windowMs;
  return e.windowMs + Math.ceil(e.windowMs / 10);
}

function defineLimit(
  name: string,
  input: LimitOptions | string,
  fallbackPolicy: FailurePolicy,
): LimitDefinition {
  assertName(name);
  const o: LimitOptions = typeof input === 'string' ? { limit: input } : input;
  const rate = toRate(o.limit, `limit "${name}"`);
  const algorithm = o.algorithm ?? 'sliding-window';
  if (!ALGORITHMS.includes(algorithm)) {
    throw new ShoalError(
      'ratelimit.invalid_limit',
      `limit "${name}": unknown algorithm ${JSON.stringify(algorithm)} (expected ${ALGORITHMS.join(', ')})`,
    );
  }
  const burst = o.burst ?? rate.requests;
  if (!Number.isSafeInteger(burst) || burst < 1) {
    throw new ShoalError('ratelimit.invalid_limit', `limit "${name}": burst must be a positive integer`);
  }
  const policy = o.onStoreFailure ?? fallbackPolicy;
  if (!POLICIES.includes(policy)) {
    throw new ShoalError(
      'ratelimit.invalid_limit',
      `limit "${name}": onStoreFailure ${JSON.stringify(policy)} (expected open, closed or local)`,
    );
  }
  const mode = o.mode ?? 'enforce';
  if (mode !== 'enforce' && mode !== 'shadow') {
    throw new ShoalError('ratelimit.invalid_limit', `limit "${name}": mode must be enforce or shadow`);
  }
  return { name, rate, algorithm, burst, onStoreFailure: policy, mode, identity: o.identity ?? false };
}

function replicasFromEnv(): number {
  const n = Number(process.env.SHOAL_REPLICAS);
  return Number.isSafeInteger(n) && n >= 1 ? n : 1;
}

/**
 * Several named limits shared by every instance through Redis.
 *
 * @example
 * const limiter = createRateLimiter({
 *   redis,
 *   limits: { ip: '200/min', identity: { limit: '100/min', identity: true }, 'orders-write': '500/min' },
 * });
 * await limiter.start();
 * const d = await limiter.check({ ip: '203.0.113.9', identity: 'user-42', 'orders-write': 'all' });
 * if (!d.allowed) console.log(`rejected by ${d.rejectedBy}, retry in ${d.retryAfterMs} ms`);
 */
export class RateLimiter {
  readonly definitions: ReadonlyMap<string, LimitDefinition>;
  readonly keys: KeySpace;
  readonly deadlineMs: number;
  readonly replicas: number;
  readonly #redis: RedisClient;
  readonly #check: LuaScript;
  readonly #refund: LuaScript;
  readonly #block: LuaScript;
  readonly #blockCache: BoundedLru<number>;
  readonly #local: LocalCounters;
  readonly #breaker: CircuitBreaker;
  readonly #metrics: RateLimitMetrics;
  readonly #log: Logger;
  readonly #clock: () => number;
  readonly #control: RuntimeControl;
  readonly #maxSubject: number;
  readonly #nearRatio: number;
  readonly #multiSlot: boolean;
  #started: Promise<void> | undefined;
  #scratch = new Float64Array(3 + 6 * 4);
  #scratchBytes = new Uint8Array(this.#scratch.buffer);

  constructor(options: RateLimiterOptions) {
    const policy = options.onStoreFailure ?? 'local';
    const defs = new Map<string, LimitDefinition>();
    for (const [name, o] of Object.entries(options.limits)) defs.set(name, defineLimit(name, o, policy));
    if (defs.size === 0)
      throw new ShoalError('ratelimit.invalid_limit', 'createRateLimiter: no limits given');
    this.definitions = defs;
    this.#redis = options.redis;
    this.keys = new KeySpace(options.prefix ?? 'shoal:rl:', options.keyMode ?? 'shared');
    this.deadlineMs = options.deadlineMs ?? 50;
    this.replicas = options.replicas ?? replicasFromEnv();
    this.#clock = options.clock ?? Date.now;
    this.#log = (options.logger ?? silentLogger).child({ component: 'ratelimit' });
    this.#metrics = new RateLimitMetrics(options.registry);
    this.#maxSubject = options.maxSubjectLength ?? 64;
    this.#nearRatio = options.nearLimitRatio ?? 0.1;
    this.#blockCache = new BoundedLru(options.blockCacheSize ?? 10_000);
    this.#local = new LocalCounters(options.fallbackSize ?? 10_000, this.replicas, this.#clock);
    this.#check = loadLuaFile(import.meta.url, './scripts/check-n.lua');
    this.#refund = loadLuaFile(import.meta.url, './scripts/refund-n.lua');
    this.#block = loadLuaFile(import.meta.url, './scripts/block-1.lua');
    this.#multiSlot =
      this.keys.mode === 'spread' && 'isCluster' in this.#redis && this.#redis.isCluster === true;
    this.#breaker = new CircuitBreaker({
      failureThreshold: options.breaker?.failureThreshold ?? 3,
      cooldownMs: options.breaker?.cooldownMs ?? 1000,
      clock: this.#clock,
      onTransition: (from, to, reason) => {
        this.#metrics.breakerTransitions.inc({ to });
        this.#metrics.breakerOpen.set(to === 'closed' ? 0 : 1);
        const line = { event: 'ratelimit.breaker', from, to, reason };
        if (to === 'open')
          this.#log.error(line, 'rate limiter: Redis unavailable, failure policies in effect');
        else this.#log.warn(line, `rate limiter: circuit breaker ${to}`);
      },
    });
    this.#control = new RuntimeControl({
      redis: this.#redis,
      keys: this.keys,
      pollMs: options.configPollMs ?? 500,
      logger: this.#log,
      onChange: (s) => {
        // A raised or disabled limit must not stay blocked locally.
        this.#blockCache.clear();
        this.#metrics.configVersion.set(s.version);
      },
      onKeyEvent: (cacheKey) => this.#blockCache.delete(cacheKey),
    });
  }

  /** Load the runtime configuration and start watching it. Idempotent; never throws. */
  start(): Promise<void> {
    this.#started ??= this.#control.start();
    return this.#started;
  }

  /** Stop watching the configuration (does not close the Redis client you passed). */
  async close(): Promise<void> {
    this.#metrics.detach();
    await this.#control.close();
  }

  /** The runtime configuration this instance currently applies. */
  get runtime(): RuntimeSnapshot {
    return this.#control.snapshot;
  }

  /** Current circuit-breaker state. */
  get breakerState(): string {
    return this.#breaker.state;
  }

  /**
   * Decide one request against every limit whose subject is given (undefined/null skips a limit).
   * One Redis round trip; all limits are charged or none.
   *
   * @example
   * const d = await limiter.check({ ip: clientIp, identity }, { cost: 5 });
   */
  async check(
    subjects: Record<string, string | undefined | null>,
    options: CheckOptions = {},
  ): Promise<Decision> {
    const entries = this.#entries(subjects, options.cost);
    if (entries.length === 0) {
      return {
        allowed: true,
        rejectedBy: undefined,
        storeUnavailable: false,
        retryAfterMs: 0,
        source: 'redis',
        limits: [],
      };
    }
    const cached = this.#fromCache(entries);
    if (cached) return cached;
    if (!this.#breaker.allow()) return this.#fallback(entries, 'breaker_open');
    const started = performance.now();
    let verdicts: Verdict[];
    try {
      // single-slot fast path: the deadline wraps ioredis's own promise and the reply is parsed
      // here, so a decision pays for no async layers between check() and the socket write
      verdicts =
        this.#multiSlot && entries.length > 1
          ? await this.#withDeadline(this.#evaluate(entries, true))
          : this.#parse(entries, await this.#withDeadline(this.#send(entries, true))).verdicts;
      this.#metrics.observeRedis('ok', (performance.now() - started) / 1000);
      this.#breaker.success();
    } catch (err) {
      const timeout = err instanceof DeadlineExceeded;
      this.#metrics.observeRedis(timeout ? 'timeout' : 'error', (performance.now() - started) / 1000);
      this.#breaker.failure(timeout ? `deadline ${this.deadlineMs} ms exceeded` : (err as Error).message);
      return this.#fallback(entries, timeout ? 'timeout' : 'error');
    }
    return this.#finish(entries, verdicts, 'redis');
  }

  #effective(def: LimitDefinition, raw: string): ContextOverride | undefined {
    const snap = this.#control.snapshot;
    if (def.identity) {
      const o = snap.identities.get(raw);
      if (o) return o;
    }
    return snap.contexts.get(def.name);
  }

  #entries(subjects: Record<string, string | undefined | null>, cost: CheckOptions['cost']): Entry[] {
    const out: Entry[] = [];
    for (const name in subjects) {
      const raw = subjects[name];
      if (raw === undefined || raw === null) continue;
      const def = this.definitions.get(name);
      if (!def) throw new ShoalError('ratelimit.invalid_limit', `check(): unknown limit "${name}"`);
      const c = typeof cost === 'object' ? (cost[name] ?? 1) : (cost ?? 1);
      if (!Number.isSafeInteger(c) || c < 1) {
        throw new ShoalError(
          'ratelimit.invalid_limit',
          `check(): cost for "${name}" must be a positive integer`,
        );
      }
      const o = this.#effective(def, raw);
      if (o && !o.enabled) continue;
      const subject = subjectOf(raw, this.#maxSubject);
      const requests = o ? o.requests_per_minute : def.rate.requests;
      out.push({
        def,
        subject,
        key: this.keys.state(name, subject),
        cacheKey: `${name}:${subject}`,
        requests,
        windowMs: o ? 60_000 : def.rate.windowMs,
        burst: o ? (o.burst_size ?? o.requests_per_minute) : def.burst,
        mode: o ? o.mode : def.mode,
        cost: c,
      });
    }
    return out;
  }

  #fromCache(entries: Entry[]): Decision | undefined {
    const now = this.#clock();
    for (const e of entries) {
      if (e.mode !== 'enforce') continue;
      const until = this.#blockCache.get(e.cacheKey);
      if (until === undefined) continue;
      if (until <= now) {
        this.#blockCache.delete(e.cacheKey);
        continue;
      }
      const retry = until - now;
      const result = this.#result(e, {
        ok: false,
        remaining: 0,
        resetMs: retry,
        retryMs: retry,
        retry1Ms: retry,
        stamp: 0,
      });
      this.#metrics.decision(e.def.name, 'rejected', 'cache');
      this.#audit(result, 'cache');
      return {
        allowed: false,
        rejectedBy: e.def.name,
        storeUnavailable: false,
        retryAfterMs: retry,
        source: 'cache',
        limits: [result],
      };
    }
    return undefined;
  }

  #withDeadline<T>(p: Promise<T>): Promise<T> {
    // One timer per call (a shared FIFO queue measured slower: its entries outlive the young
    // generation); the late outcome of a timed-out call is dropped.
    return new Promise<T>((resolve, reject) => {
      const timer = setTimeout(() => reject(new DeadlineExceeded()), this.deadlineMs);
      p.then(
        (v) => {
          clearTimeout(timer);
          resolve(v);
        },
        (err) => {
          clearTimeout(timer);
          reject(err);
        },
      );
    });
  }

  /**
   * One EVALSHA of check-n with binary arguments and a binary reply (see the script header):
   * packing costs next to nothing on either side, while every extra argument or reply value
   * costs Redis and the client parser real time.
   */
  async #run(entries: Entry[], charge: boolean): Promise<{ allowed: boolean; verdicts: Verdict[] }> {
    return this.#parse(entries, await this.#send(entries, charge));
  }

  /** Pack the request and start the EVALSHA (no await: the caller owns the only async step). */
  #send(entries: Entry[], charge: boolean): Promise<Buffer> {
    const n = entries.length;
    const cfg = Buffer.allocUnsafe(1 + 34 * n);
    cfg[0] = charge ? 1 : 0;
    const argv: (string | number | Buffer)[] = new Array(3 + 2 * n);
    argv[0] = this.#check.sha;
    argv[1] = n;
    argv[2 + n] = cfg;
    for (let i = 0; i < n; i++) {
      const e = entries[i]!;
      const o = 1 + 34 * i;
      cfg[o] = ALG_CODE[e.def.algorithm];
      cfg.writeDoubleLE(e.requests, o + 1);
      cfg.writeDoubleLE(e.windowMs, o + 9);
      cfg.writeDoubleLE(e.burst, o + 17);
      cfg.writeDoubleLE(e.cost, o + 25);
      cfg[o + 33] = e.mode === 'shadow' ? 1 : 0;
      argv[2 + i] = e.key;
      argv[3 + n + i] = stateTtlMs(e);
    }
    return this.#evalBuffer(argv);
  }

  #parse(entries: Entry[], raw: Buffer): { allowed: boolean; verdicts: Verdict[] } {
    const n = entries.length;
    const len = 3 + 6 * n;
    if (raw.length !== 8 * len) {
      throw new ShoalError('store.script_failed', `Lua script ${this.#check.name}: unexpected reply`);
    }
    // One copy into an aligned scratch array beats 6n+3 readDoubleLE calls (the reply slice is
    // rarely 8-byte aligned); the script packs little-endian, so big-endian hosts read bytewise.
    if (this.#scratch.length < len) {
      this.#scratch = new Float64Array(len);
      this.#scratchBytes = new Uint8Array(this.#scratch.buffer);
    }
    const d = this.#scratch;
    if (LITTLE_ENDIAN) this.#scratchBytes.set(raw);
    else for (let k = 0; k < len; k++) d[k] = raw.readDoubleLE(8 * k);
    const at = d[2]!;
    const verdicts: Verdict[] = new Array(n);
    for (let i = 0; i < n; i++) {
      const b = 3 + i * 6;
      verdicts[i] = {
        at,
        ok: d[b]! === 1,
        remaining: d[b + 1]!,
        resetMs: d[b + 2]!,
        retryMs: d[b + 3]!,
        retry1Ms: d[b + 4]!,
        stamp: d[b + 5]!,
      };
    }
    return { allowed: d[0] === 1, verdicts };
  }

  /** EVALSHA with a Buffer reply; on NOSCRIPT send the source once (which caches it). */
  #evalBuffer(argv: (string | number | Buffer)[]): Promise<Buffer> {
    const redis = this.#redis as unknown as BufferEval;
    return redis.evalshaBuffer(argv).catch((err: unknown) => {
      if (!(err instanceof Error && err.message.startsWith('NOSCRIPT'))) throw this.#scriptFailed(err);
      return redis.evalBuffer([this.#check.source, ...argv.slice(1)]).catch((e: unknown) => {
        throw this.#scriptFailed(e);
      });
    });
  }

  #scriptFailed(err: unknown): unknown {
    // Lua errors are bugs and get a stable code; connection and server-state errors pass through.
    if (!(err instanceof Error) || err.name !== 'ReplyError' || SERVER_STATE.test(err.message)) return err;
    return new ShoalError('store.script_failed', `Lua script ${this.#check.name} failed: ${err.message}`, {
      cause: err,
      detail: { script: this.#check.name, sha: this.#check.sha },
    });
  }

  /**
   * One script when all keys share a slot (always, on a single node or with `shared` keys);
   * otherwise one script per slot in parallel, then a refund to the slots that charged when any
   * slot rejected, so the end state is all-or-nothing.
   */
  async #evaluate(entries: Entry[], charge: boolean): Promise<Verdict[]> {
    if (!this.#multiSlot || entries.length === 1) return (await this.#run(entries, charge)).verdicts;
    const groups = new Map<number, number[]>();
    entries.forEach((e, i) => {
      const slot = keySlot(e.key);
      const g = groups.get(slot);
      if (g) g.push(i);
      else groups.set(slot, [i]);
    });
    if (groups.size === 1) return (await this.#run(entries, charge)).verdicts;
    const parts = [...groups.values()];
    const outcomes = await Promise.all(
      parts.map((idx) =>
        this.#run(
          idx.map((i) => entries[i]!),
          charge,
        ),
      ),
    );
    const verdicts: Verdict[] = new Array(entries.length);
    parts.forEach((idx, p) => {
      idx.forEach((i, j) => {
        verdicts[i] = outcomes[p]!.verdicts[j]!;
      });
    });
    if (!charge || outcomes.every((o) => o.allowed)) return verdicts;
    const refunds: Promise<unknown>[] = [];
    parts.forEach((idx, p) => {
      if (!outcomes[p]!.allowed) return;
      const charged = idx.filter((i) => verdicts[i]!.ok);
      if (charged.length === 0) return;
      const args: (string | number)[] = [];
      for (const i of charged) {
        const e = entries[i]!;
        args.push(ALG_CODE[e.def.algorithm], e.requests, e.windowMs, e.cost, verdicts[i]!.stamp);
        verdicts[i] = { ...verdicts[i]!, remaining: verdicts[i]!.remaining + e.cost };
      }
      refunds.push(
        runScript(
          this.#redis,
          this.#refund,
          charged.map((i) => entries[i]!.key),
          args,
        ),
      );
    });
    await Promise.all(refunds);
    return verdicts;
  }

  #result(e: Entry, v: Verdict): LimitResult {
    return {
      name: e.def.name,
      subject: e.subject,
      algorithm: e.def.algorithm,
      requests: e.requests,
      windowMs: e.windowMs,
      mode: e.mode,
      allowed: v.ok,
      remaining: v.remaining,
      resetMs: v.resetMs,
      retryAfterMs: v.ok ? 0 : v.retryMs < 0 ? e.windowMs : v.retryMs,
    };
  }

  #finish(entries: Entry[], verdicts: Verdict[], source: 'redis' | 'fallback'): Decision {
    const limits: LimitResult[] = [];
    let rejectedBy: string | undefined;
    let retryAfterMs = 0;
    const now = this.#clock();
    for (let i = 0; i < entries.length; i++) {
      const e = entries[i]!;
      const v = verdicts[i]!;
      const r = this.#result(e, v);
      limits.push(r);
      if (!v.ok && e.mode === 'enforce') {
        if (rejectedBy === undefined) rejectedBy = e.def.name;
        retryAfterMs = Math.max(retryAfterMs, r.retryAfterMs);
        if (source === 'redis' && v.retry1Ms > 0) this.#blockCache.set(e.cacheKey, now + v.retry1Ms);
      }
    }
    const allowed = rejectedBy === undefined;
    for (const r of limits) {
      const outcome = r.allowed ? 'allowed' : r.mode === 'shadow' ? 'shadow_rejected' : 'rejected';
      this.#metrics.decision(r.name, outcome, source);
      if (r.allowed) {
        if (allowed && r.remaining <= r.requests * this.#nearRatio) {
          this.#metrics.inc(this.#metrics.nearLimit, { limit: r.name }, `${r.name}\0near`);
        }
      } else if (r.mode === 'shadow') {
        this.#metrics.inc(this.#metrics.shadowRejections, { limit: r.name }, `${r.name}\0shadow`);
        this.#audit(r, source);
      } else {
        this.#audit(r, source);
      }
    }
    return {
      allowed,
      rejectedBy,
      storeUnavailable: false,
      retryAfterMs: allowed ? 0 : retryAfterMs,
      source,
      limits,
      at: verdicts[0]?.at,
    };
  }

  #audit(r: LimitResult, source: string): void {
    const line = {
      event: r.mode === 'shadow' ? 'ratelimit.shadow_rejected' : 'ratelimit.rejected',
      limit: r.name,
      subject: r.subject,
      rate: formatRate({ requests: r.requests, windowMs: r.windowMs }),
      retry_after_ms: r.retryAfterMs,
      source,
    };
    if (r.mode === 'shadow') this.#log.info(line, 'rate limit would reject (shadow mode)');
    else this.#log.warn(line, 'rate limit exceeded');
  }

  #fallback(entries: Entry[], reason: string): Decision {
    const verdicts: Verdict[] = new Array(entries.length);
    const localIdx: number[] = [];
    let closedBy: string | undefined;
    entries.forEach((e, i) => {
      const policy = e.def.onStoreFailure;
      this.#metrics.inc(
        this.#metrics.fallback,
        { limit: e.def.name, policy, reason },
        `${e.def.name}\0${policy}\0${reason}`,
      );
      if (policy === 'local') localIdx.push(i);
      else if (policy === 'open') {
        verdicts[i] = {
          ok: true,
          remaining: e.requests,
          resetMs: e.windowMs,
          retryMs: 0,
          retry1Ms: 0,
          stamp: 0,
        };
      } else {
        verdicts[i] = { ok: false, remaining: 0, resetMs: 1000, retryMs: 1000, retry1Ms: 0, stamp: 0 };
        if (e.mode === 'enforce' && closedBy === undefined) closedBy = e.def.name;
      }
    });
    if (localIdx.length > 0) {
      const res = this.#local.check(
        localIdx.map((i) => {
          const e = entries[i]!;
          return { key: e.cacheKey, requests: e.requests, windowMs: e.windowMs, cost: closedBy ? 0 : e.cost };
        }),
      );
      localIdx.forEach((i, j) => {
        const [ok, remaining, retry] = res[j]!;
        const e = entries[i]!;
        verdicts[i] = { ok, remaining, resetMs: e.windowMs, retryMs: retry, retry1Ms: 0, stamp: 0 };
      });
    }
    const d = this.#finish(entries, verdicts, 'fallback');
    if (closedBy !== undefined && d.rejectedBy === closedBy) d.storeUnavailable = true;
    return d;
  }

  /**
   * Report the state of one (limit, subject) without charging it.
   *
   * @example
   * const s = await limiter.inspect('ip', '203.0.113.9'); // { remaining: 187, resetMs: 41000, ... }
   */
  async inspect(limit: string, subject: string): Promise<KeyState> {
    const entries = this.#entries({ [limit]: subject }, 1);
    const def = this.#def(limit);
    const e = entries[0] ?? {
      def,
      subject: subjectOf(subject, this.#maxSubject),
      key: this.keys.state(limit, subjectOf(subject, this.#maxSubject)),
      cacheKey: '',
      requests: def.rate.requests,
      windowMs: def.rate.windowMs,
      burst: def.burst,
      mode: def.mode,
      cost: 1,
    };
    const { verdicts } = await this.#run([e], false);
    const v = verdicts[0]!;
    const raw = await this.#redis.getBuffer(e.key);
    return {
      limit,
      subject: e.subject,
      // the peek evaluated a cost of 1; report what is left before it
      remaining: v.ok ? v.remaining + 1 : v.remaining,
      resetMs: v.resetMs,
      retryAfterMs: v.ok ? 0 : v.retryMs,
      blocked: raw !== null && raw.length === 9 && raw[0] === 0x42,
      requests: e.requests,
      windowMs: e.windowMs,
      algorithm: def.algorithm,
    };
  }

  /**
   * Forget one subject's usage of a limit (also unblocks it) on every instance.
   *
   * @example
   * await limiter.reset('identity', 'user-42');
   */
  async reset(limit: string, subject: string): Promise<void> {
    this.#def(limit);
    const stored = subjectOf(subject, this.#maxSubject);
    await this.#redis.del(this.keys.state(limit, stored));
    await this.#control.announceKey(`${limit}:${stored}`);
  }

  /**
   * Reject one subject on one limit for `durationMs`, fleet-wide (Redis time).
   *
   * @example
   * await limiter.block('ip', '198.51.100.23', 10 * 60_000);
   */
  async block(limit: string, subject: string, durationMs: number): Promise<number> {
    this.#def(limit);
    if (!Number.isSafeInteger(durationMs) || durationMs < 1) {
      throw new ShoalError('http.bad_request', 'block duration must be a positive integer of milliseconds');
    }
    const stored = subjectOf(subject, this.#maxSubject);
    return runScript<number>(this.#redis, this.#block, [this.keys.state(limit, stored)], [durationMs]);
  }

  /**
   * Set (or with `undefined` remove) the fleet-wide override of a limit ("context").
   * Every instance applies it within about one second.
   *
   * @example
   * await limiter.setContext('orders-write', { requests_per_minute: 50, enabled: true, mode: 'enforce' });
   */
  async setContext(name: string, value: ContextOverride | undefined): Promise<number> {
    assertName(name, 'context name');
    return this.#control.write(
      'context',
      name,
      value === undefined ? undefined : overrideSchema.parse(value),
    );
  }

  /**
   * Set (or remove) an override for one identity on limits declared with `identity: true`.
   *
   * @example
   * await limiter.setIdentity('user-42', { requests_per_minute: 1000, enabled: true, mode: 'enforce' });
   */
  async setIdentity(identity: string, value: ContextOverride | undefined): Promise<number> {
    if (identity.length === 0 || identity.length > 256) {
      throw new ShoalError('http.bad_request', 'identity must be 1-256 characters');
    }
    return this.#control.write(
      'identity',
      identity,
      value === undefined ? undefined : overrideSchema.parse(value),
    );
  }

  /** Re-read the runtime configuration now (normally pub/sub and polling do this). */
  refresh(): Promise<void> {
    return this.#control.reload();
  }

  #def(limit: string): LimitDefinition {
    const def = this.definitions.get(limit);
    if (!def) throw new ShoalError('http.not_found', `unknown limit "${limit}"`);
    return def;
  }
}

/**
 * Create a {@link RateLimiter}; validates every limit at once and throws naming the bad value.
 *
 * @example
 * const limiter = createRateLimiter({ redis, limits: { ip: process.env.ORDERS_LIMIT_IP ?? '200/min' } });
 */
export function createRateLimiter(options: RateLimiterOptions): RateLimiter {
  return new RateLimiter(options);
}
