/**
 * The rate limiter: K limits decided in one atomic Redis script, with a local block cache, a
 * deadline, per-limit failure policies behind a circuit breaker, fleet-wide runtime overrides,
 * metrics and an audit log line per rejection.
 */

import { endianness } from 'node:os';
import { type Logger, silentLogger } from '../contracts/index.js';
import { ShoalError } from '../errors.js';
import type { RedisClient } from '../stores/redis/client.js';
import {
  evalPacked,
  type PackedTemplate,
  packedTemplate,
  type ReplyHandler,
  sendTemplate,
} from '../stores/redis/packed.js';
import { type LuaScript, loadLuaFile, runScript, scriptFailed } from '../stores/redis/scripts.js';
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

/**
 * What the script needs to know about one limit once runtime overrides are applied. Built once
 * per (definition, override) and shared by every decision using it, so a batch can send each
 * distinct config once.
 */
interface LimitConfig {
  requests: number;
  windowMs: number;
  burst: number;
  mode: LimitMode;
  /** `<BdddB`: alg, limit, window_ms, burst, shadow (see check-n.lua). */
  bytes: Uint8Array;
  /**
   * GCRA only: the state-key TTL in ms, as the text SET ... PX takes, sent with the call. A
   * counter's TTL is worked out by check-n from its window (it is needed only when the window moves).
   */
  ttl: string | undefined;
}

function putU16(out: Uint8Array, at: number, v: number): void {
  out[at] = v & 0xff;
  out[at + 1] = v >>> 8;
}

/** One limit of one decision after runtime overrides are applied. */
interface Entry {
  def: LimitDefinition;
  /** The limit as it applies now (runtime override included). */
  conf: LimitConfig;
  subject: string;
  key: string;
  cost: number;
}

/**
 * The block cache's and the local fallback's key of an entry: made when needed (a rejection, a
 * fallback) rather than for every decision.
 */
function cacheKeyOf(e: Entry): string {
  return `${e.def.name}:${e.subject}`;
}

/** One limit's part of a decision; `retryMs` < 0 means this cost never fits (a window then). */
function limitResult(
  e: Entry,
  ok: boolean,
  remaining: number,
  resetMs: number,
  retryMs: number,
): LimitResult {
  return {
    name: e.def.name,
    subject: e.subject,
    algorithm: e.def.algorithm,
    requests: e.conf.requests,
    windowMs: e.conf.windowMs,
    mode: e.conf.mode,
    allowed: ok,
    remaining,
    resetMs,
    retryAfterMs: ok ? 0 : retryMs < 0 ? e.conf.windowMs : retryMs,
  };
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

/** The deadline of one script call: expired once, unless the call settles first. */
interface Deadline {
  due: number;
  /** False once the call it guards has settled, or it has expired. */
  live: boolean;
  expire(): void;
}

/** One decision waiting for the current batch. */
interface Pending {
  entries: Entry[];
  resolve: (d: Decision) => void;
  reject: (err: unknown) => void;
}

/** One request of a script call, and what the script answered for it. */
interface Outcome {
  allowed: boolean;
  verdicts: Verdict[];
}

/** A check-n call on its way: the raw reply, and how many limits it decides in all. */
interface PackedCall {
  reply: Promise<Buffer>;
  limits: number;
}

/**
 * A batch never exceeds this many decisions, nor this many limits in all: bounds how long one
 * script holds Redis (~160 us for 32 three-limit decisions) and keeps its packed reply within
 * what one Lua call may return. Below this cap, `#flushQueue` sizes calls by the load.
 */
const MAX_BATCH = 32;
/** Bytes of one packed limit config (layout in check-n.lua). */
const CONFIG_BYTES = 26;
const MAX_BATCH_LIMITS = 512;
/** Sequences of limit configs whose lone-decision call bytes are kept (see #loneTemplate). */
const MAX_LONE_SHAPES = 64;

/**
 * How long a GCRA state key must outlive its last write: it is useless once its TAT has passed,
 * which is at most burst * interval after an admitted write. Static per limit and sent as text,
 * because GCRA sets its state on every admission and Redis would format a number each time.
 */
function gcraTtlMs(requests: number, windowMs: number, burst: number): number {
  return Math.ceil((burst * windowMs) / requests) + 1;
}

function limitConfig(
  algorithm: Algorithm,
  requests: number,
  windowMs: number,
  burst: number,
  mode: LimitMode,
): LimitConfig {
  const b = Buffer.alloc(CONFIG_BYTES);
  b[0] = ALG_CODE[algorithm];
  b.writeDoubleLE(requests, 1);
  b.writeDoubleLE(windowMs, 9);
  b.writeDoubleLE(burst, 17);
  b[25] = mode === 'shadow' ? 1 : 0;
  return {
    requests,
    windowMs,
    burst,
    mode,
    bytes: b,
    ttl: algorithm === 'gcra' ? String(gcraTtlMs(requests, windowMs, burst)) : undefined,
  };
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
  readonly #baseConfigs = new Map<LimitDefinition, LimitConfig>();
  /** Configs under an override, per override object (replaced on every change, so never stale). */
  readonly #overrideConfigs = new WeakMap<ContextOverride, Map<LimitDefinition, LimitConfig>>();
  #started: Promise<void> | undefined;
  #queue: Pending[] = [];
  /** Script calls of #sendBatch not yet settled (answered, failed or past their deadline). */
  #inFlight = 0;
  /** Decisions in those calls. */
  #inFlightDecisions = 0;
  /**
   * Deadlines of the calls in flight, oldest first, under one timer. Every call has the same
   * deadline and one connection answers in order, so calls fall due, and mostly settle, in the
   * order they were sent: a settled call leaves from the front, and the timer, when it fires,
   * expires what is due and re-arms for the new front: a few timers per deadline period instead
   * of a setTimeout and clearTimeout per call. Measured over six fresh processes each, the
   * client cost of a three-limit decision fell from ~3.9 to ~3.1 us.
   */
  readonly #deadlines: (Deadline | undefined)[] = [];
  #deadlineHead = 0;
  #deadlineTimer: NodeJS.Timeout | undefined;
  readonly #onDeadline = (): void => {
    this.#deadlineTimer = undefined;
    const q = this.#deadlines;
    const now = performance.now();
    while (this.#deadlineHead < q.length) {
      const d = q[this.#deadlineHead]!;
      if (d.live && d.due > now) break;
      q[this.#deadlineHead++] = undefined;
      if (d.live) {
        d.live = false;
        d.expire();
      }
    }
    this.#compactDeadlines();
    const next = q[this.#deadlineHead];
    if (next !== undefined) this.#deadlineTimer = this.#armDeadline(next.due);
  };
  readonly #flush = () => this.#flushQueue();
  #packBuf = new Uint8Array(512);
  /** See #loneTemplate: by the first config of the sequence. */
  readonly #loneShapes = new Map<LimitConfig, { confs: LimitConfig[]; template: PackedTemplate }[]>();
  #loneShapeCount = 0;
  readonly #costBytes = new Uint8Array(8);
  readonly #costView = new DataView(this.#costBytes.buffer);
  #scratch = new Float64Array(64);
  #scratchBytes = new Uint8Array(this.#scratch.buffer);

  constructor(options: RateLimiterOptions) {
    const policy = options.onStoreFailure ?? 'local';
    const defs = new Map<string, LimitDefinition>();
    for (const [name, o] of Object.entries(options.limits)) defs.set(name, defineLimit(name, o, policy));
    if (defs.size === 0)
      throw new ShoalError('ratelimit.invalid_limit', 'createRateLimiter: no limits given');
    this.definitions = defs;
    for (const d of defs.values()) {
      this.#baseConfigs.set(d, limitConfig(d.algorithm, d.rate.requests, d.rate.windowMs, d.burst, d.mode));
    }
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
        // Replaced overrides leave configs no decision will use again.
        this.#loneShapes.clear();
        this.#loneShapeCount = 0;
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
  check(subjects: Record<string, string | undefined | null>, options: CheckOptions = {}): Promise<Decision> {
    // Not an async function: a decision that waits for Redis settles straight from the script
    // call's answer, with no extra promise in between (each costs a turn at concurrency 1).
    try {
      const entries = this.#entries(subjects, options.cost);
      if (entries.length === 0) {
        return Promise.resolve({
          allowed: true,
          rejectedBy: undefined,
          storeUnavailable: false,
          retryAfterMs: 0,
          source: 'redis',
          limits: [],
        });
      }
      const cached = this.#fromCache(entries);
      if (cached) return Promise.resolve(cached);
      if (!this.#breaker.allow()) return Promise.resolve(this.#fallback(entries, 'breaker_open'));
      if (this.#multiSlot && entries.length > 1) return this.#checkSpread(entries);
      return new Promise<Decision>((resolve, reject) => {
        // With no call in flight the decision goes out at once: nothing is waiting to share its
        // call, and deferring would only add a turn. Otherwise decisions started in the same
        // event-loop turn share script calls (see #flushQueue); either way they reach Redis in
        // the order they were started.
        if (this.#queue.length === 0) {
          if (this.#inFlight === 0) {
            this.#sendBatch([{ entries, resolve, reject }]);
            return;
          }
          process.nextTick(this.#flush);
        }
        this.#queue.push({ entries, resolve, reject });
      });
    } catch (err) {
      return Promise.reject(err);
    }
  }

  /** A decision whose keys live in several Cluster slots: one call per slot, never batched. */
  async #checkSpread(entries: Entry[]): Promise<Decision> {
    const started = performance.now();
    let verdicts: Verdict[];
    try {
      verdicts = await this.#withDeadline(this.#evaluate(entries, true));
      this.#redisAnswered(started);
    } catch (err) {
      return this.#fallback(entries, this.#redisFailed(started, err));
    }
    return this.#finish(entries, verdicts, 'redis');
  }

  #redisAnswered(started: number): void {
    this.#metrics.observeRedis('ok', (performance.now() - started) / 1000);
    this.#breaker.success();
  }

  /** Record a failed call; returns the fallback reason. */
  #redisFailed(started: number, err: unknown): 'timeout' | 'error' {
    const timeout = err instanceof DeadlineExceeded;
    this.#metrics.observeRedis(timeout ? 'timeout' : 'error', (performance.now() - started) / 1000);
    this.#breaker.failure(timeout ? `deadline ${this.deadlineMs} ms exceeded` : (err as Error).message);
    return timeout ? 'timeout' : 'error';
  }

  /**
   * Send every queued decision in script calls. Under load many requests reach the limiter in one
   * event-loop turn; one call for several of them costs Redis one script run, one read and one
   * write per shared key instead of one each, and the instance one socket write and one deadline
   * timer. Queued decisions go out as soon as the current turn's synchronous work is done, so
   * batching adds no waiting (and with no call in flight, check() sends at once). The script
   * decides the batch's requests in order, so the result is that of separate calls.
   *
   * Size: half of the decisions waiting on Redis (queued plus in flight), at most MAX_BATCH. Two
   * calls in flight keep both sides busy, since Redis runs one while the instance settles the
   * other's answer and packs the next; fewer, larger calls cost Redis less per decision. One call
   * for everything leaves each side idle while the other works, and many small calls pay the
   * per-call cost many times. Measured at concurrency 8/16/64/256 (three limits each), against the
   * earlier fixed 16 per call: +9 %/+45 %/+7 %/+5 % decisions per second, unchanged at 1-4 and 32.
   */
  #flushQueue(): void {
    const queue = this.#queue;
    this.#queue = [];
    const target = Math.min(MAX_BATCH, Math.ceil((queue.length + this.#inFlightDecisions) / 2));
    // Even batches: 33 decisions go as 17 + 16, not 32 + 1.
    const size = Math.ceil(queue.length / Math.ceil(queue.length / target));
    let start = 0;
    let limits = 0;
    for (let i = 0; i < queue.length; i++) {
      const n = queue[i]!.entries.length;
      if (i > start && (i - start === size || limits + n > MAX_BATCH_LIMITS)) {
        this.#sendBatch(queue.slice(start, i));
        start = i;
        limits = 0;
      }
      limits += n;
    }
    this.#sendBatch(start === 0 ? queue : queue.slice(start));
  }

  /**
   * Add a call's deadline at the back. Every deadline is `deadlineMs` from when it was made, so
   * the queue stays in due order.
   */
  #queueDeadline(d: Deadline): void {
    this.#deadlines.push(d);
    this.#deadlineTimer ??= this.#armDeadline(d.due);
  }

  #armDeadline(due: number): NodeJS.Timeout {
    const t = setTimeout(this.#onDeadline, Math.max(0, due - performance.now()));
    // The connection and the server keep the process alive while calls are in flight.
    t.unref();
    return t;
  }

  /**
   * A call settled: drop its deadline and every settled one at the front. Their slots are
   * emptied, not just passed: with calls always in flight (c=64) the front is compacted only
   * every 1 024 calls, and a settled call left in its slot kept its whole batch reachable until
   * then: ~4 MB copied by every scavenge, 3.5-5.6 ms pauses every ~21 ms (--trace-gc).
   */
  #deadlineDone(d: Deadline): void {
    d.live = false;
    const q = this.#deadlines;
    while (this.#deadlineHead < q.length && !q[this.#deadlineHead]!.live) {
      q[this.#deadlineHead++] = undefined;
    }
    this.#compactDeadlines();
  }

  #compactDeadlines(): void {
    const q = this.#deadlines;
    if (this.#deadlineHead === q.length) {
      // at concurrency 1 the queue holds one deadline at a time: pop() is a fast path where
      // setting the length is a runtime call
      if (q.length === 1) q.pop();
      else q.length = 0;
      this.#deadlineHead = 0;
    } else if (this.#deadlineHead > 1024) {
      q.splice(0, this.#deadlineHead);
      this.#deadlineHead = 0;
    }
  }

  #sendBatch(batch: Pending[]): void {
    const started = performance.now();
    const requests = batch.map((p) => p.entries);
    this.#inFlight++;
    this.#inFlightDecisions += batch.length;
    const call = new RateLimiter.#Call(this, batch, requests, started, started + this.deadlineMs);
    try {
      call.limits = this.#sendTo(requests, call);
    } catch (err) {
      call.fail(err);
      return;
    }
    // Queued once the request is written, so it never delays the request; the deadline still
    // counts from `started`.
    if (!call.settled) this.#queueDeadline(call);
  }

  /**
   * A script call of #sendBatch in flight: its decisions and its deadline. Whichever of answer,
   * failure or deadline comes first settles every decision in it; the others are ignored. One
   * object with methods rather than a set of closures and a promise reaction: at concurrency 1
   * every decision makes one. Declared in the class body so it reaches the limiter's internals.
   */
  static readonly #Call = class BatchCall implements ReplyHandler, Deadline {
    live = true;
    settled = false;
    limits = 0;

    constructor(
      readonly limiter: RateLimiter,
      readonly batch: Pending[],
      readonly requests: Entry[][],
      readonly started: number,
      readonly due: number,
    ) {}

    /** True for the first outcome only: that one stops the deadline and ends the call. */
    settle(): boolean {
      if (this.settled) return false;
      this.settled = true;
      const l = this.limiter;
      l.#inFlight--;
      l.#inFlightDecisions -= this.batch.length;
      l.#deadlineDone(this);
      return true;
    }

    expire(): void {
      this.fail(new DeadlineExceeded());
    }

    reply(value: Buffer): void {
      if (this.settled) return;
      const l = this.limiter;
      let d: Float64Array;
      try {
        d = l.#load(this.requests, this.limits, value, false);
      } catch (err) {
        this.fail(err);
        return;
      }
      if (!this.settle()) return;
      l.#redisAnswered(this.started);
      const batch = this.batch;
      // each request's values follow its allowed flag and rejecting index
      let b = 1;
      for (let j = 0; j < batch.length; j++) {
        const p = batch[j]!;
        const start = b + 2;
        b = start;
        for (let i = 0; i < p.entries.length; i++) b += d[b]! >= 0 ? 2 : 4;
        try {
          p.resolve(l.#finishReply(p.entries, d, start));
        } catch (e) {
          p.reject(e);
        }
      }
    }

    error(err: Error): void {
      this.fail(scriptFailed(this.limiter.#check, err));
    }

    fail(err: unknown): void {
      if (!this.settle()) return;
      const l = this.limiter;
      const reason = l.#redisFailed(this.started, err);
      for (const p of this.batch) {
        try {
          p.resolve(l.#fallback(p.entries, reason));
        } catch (e) {
          p.reject(e);
        }
      }
    }
  };

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
      out.push({
        def,
        conf: o ? this.#overrideConfig(def, o) : this.#baseConfigs.get(def)!,
        subject,
        key: this.keys.state(name, subject),
        cost: c,
      });
    }
    // the script's request header counts limits in one byte; checked here so a bad call fails
    // alone instead of failing the batch it would have joined
    if (out.length > 255) {
      throw new ShoalError('ratelimit.invalid_limit', 'check(): at most 255 limits per decision');
    }
    return out;
  }

  #overrideConfig(def: LimitDefinition, o: ContextOverride): LimitConfig {
    let byDef = this.#overrideConfigs.get(o);
    if (!byDef) {
      byDef = new Map();
      this.#overrideConfigs.set(o, byDef);
    }
    let conf = byDef.get(def);
    if (!conf) {
      conf = limitConfig(
        def.algorithm,
        o.requests_per_minute,
        60_000,
        o.burst_size ?? o.requests_per_minute,
        o.mode,
      );
      byDef.set(def, conf);
    }
    return conf;
  }

  #fromCache(entries: Entry[]): Decision | undefined {
    // Usually nothing is blocked: then no key needs hashing for a lookup.
    if (this.#blockCache.size === 0) return undefined;
    const now = this.#clock();
    for (const e of entries) {
      if (e.conf.mode !== 'enforce') continue;
      const cacheKey = cacheKeyOf(e);
      const until = this.#blockCache.get(cacheKey);
      if (until === undefined) continue;
      if (until <= now) {
        this.#blockCache.delete(cacheKey);
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

  /** `p`, or DeadlineExceeded once the deadline passes; the late outcome of `p` is dropped. */
  #withDeadline<T>(p: Promise<T>): Promise<T> {
    return new Promise<T>((resolve, reject) => {
      const deadline: Deadline = {
        due: performance.now() + this.deadlineMs,
        live: true,
        expire: () => reject(new DeadlineExceeded()),
      };
      this.#queueDeadline(deadline);
      p.then(
        (v) => {
          this.#deadlineDone(deadline);
          resolve(v);
        },
        (err) => {
          this.#deadlineDone(deadline);
          reject(err);
        },
      );
    });
  }

  /** One request (charge or peek) in a script call of its own. */
  async #run(entries: Entry[], charge: boolean): Promise<Outcome> {
    return (await this.#request([entries], charge))[0]!;
  }

  /**
   * One EVALSHA of check-n deciding `requests` in order, with one packed argument and a packed
   * reply (layouts in the script header): each distinct key and limit config is sent once. The
   * reply carries stamps, which a refund on a Cluster needs (batched calls go without).
   */
  async #request(requests: Entry[][], charge: boolean): Promise<Outcome[]> {
    const call = this.#send(requests, charge, true);
    let reply: Buffer;
    try {
      reply = await call.reply;
    } catch (err) {
      throw scriptFailed(this.#check, err);
    }
    return this.#parse(requests, call.limits, reply, true);
  }

  /** Pack `requests` into one check-n call and send it; the reply is parsed by {@link #parse}. */
  #send(requests: Entry[][], charge: boolean, stamps: boolean): PackedCall {
    const p = this.#pack(requests, charge, stamps);
    return {
      reply: evalPacked(this.#redis, this.#check, p.keys, this.#packBuf, p.ttls, p.size),
      limits: p.limits,
    };
  }

  /**
   * Send `requests` in one charging check-n call whose outcome goes to `handler`; returns how
   * many limits it decides. A lone decision goes from its template (see #loneTemplate).
   */
  #sendTo(requests: Entry[][], handler: ReplyHandler): number {
    if (requests.length === 1) {
      const entries = requests[0]!;
      const t = this.#loneTemplate(entries);
      if (t) {
        const keys: string[] = new Array(entries.length);
        for (let i = 0; i < entries.length; i++) keys[i] = entries[i]!.key;
        sendTemplate(this.#redis, t, keys, handler);
        return entries.length;
      }
    }
    const call = this.#send(requests, true, false);
    call.reply.then(
      (v) => handler.reply(v),
      (e: Error) => handler.error(e),
    );
    return call.limits;
  }

  /**
   * The call bytes of a lone charged decision whose costs are all 1, but for its keys. They
   * depend only on which limit configs it uses, in order, so they are encoded once per such
   * sequence and reused: at concurrency 1 nearly every decision is lone, and packing its configs
   * and encoding its arguments anew cost more of its JavaScript time than any other step. At most
   * {@link MAX_LONE_SHAPES} sequences are kept, until the next runtime change: per-identity
   * overrides make a config each, and beyond the cap a new sequence is packed as usual rather
   * than evicting one (a churning cache would cost more than no cache). A lookup compares config
   * identities only. Undefined when some cost is not 1 or the sequence is not kept.
   */
  #loneTemplate(entries: Entry[]): PackedTemplate | undefined {
    for (let i = 0; i < entries.length; i++) if (entries[i]!.cost !== 1) return undefined;
    const first = entries[0]!.conf;
    let shapes = this.#loneShapes.get(first);
    if (shapes) {
      next: for (const shape of shapes) {
        const confs = shape.confs;
        if (confs.length !== entries.length) continue;
        for (let i = 1; i < confs.length; i++) if (confs[i] !== entries[i]!.conf) continue next;
        return shape.template;
      }
    }
    if (this.#loneShapeCount >= MAX_LONE_SHAPES) return undefined;
    const p = this.#pack([entries], true, false);
    const template = packedTemplate(this.#check, p.keys.length, this.#packBuf, p.size, p.ttls);
    if (!shapes) {
      shapes = [];
      this.#loneShapes.set(first, shapes);
    }
    shapes.push({ confs: entries.map((e) => e.conf), template });
    this.#loneShapeCount++;
    return template;
  }

  /**
   * Write `requests` into the shared pack buffer (layout in check-n.lua): each distinct key and
   * config once. Returns the keys and TTL arguments in the order the packed indexes use.
   */
  #pack(
    requests: Entry[][],
    charge: boolean,
    stamps: boolean,
  ): { keys: string[]; ttls: string[]; size: number; limits: number } {
    let limits = 0;
    for (const entries of requests) limits += entries.length;
    // Each distinct key and config is sent once. A decision or two is deduplicated by scanning
    // (cheaper than building maps for three limits); a large batch through maps.
    // A lone request needs no deduplication: each of its limits has a key and a config of its
    // own, and the script's short path relies on limit i using config i and key i.
    const lone = requests.length === 1;
    const big = limits > 16;
    const keyMap = big ? new Map<string, number>() : undefined;
    const confMap = big ? new Map<LimitConfig, number>() : undefined;
    const keys: string[] = [];
    const confs: LimitConfig[] = [];
    const ttls: string[] = [];
    // per limit, in order: config index, key index (1-based, as the script reads them)
    const idx: number[] = new Array(2 * limits);
    let n = 0;
    for (const entries of requests) {
      for (const e of entries) {
        let ci = lone ? 0 : confMap ? (confMap.get(e.conf) ?? 0) : confs.indexOf(e.conf) + 1;
        if (ci === 0) {
          ci = confs.push(e.conf);
          // only GCRA states take their TTL from the call (see check-n.lua)
          if (e.conf.ttl !== undefined) ttls.push(e.conf.ttl);
          confMap?.set(e.conf, ci);
        }
        let ki = lone ? 0 : keyMap ? (keyMap.get(e.key) ?? 0) : keys.indexOf(e.key) + 1;
        if (ki === 0) {
          ki = keys.push(e.key);
          keyMap?.set(e.key, ki);
        }
        idx[n++] = ci;
        idx[n++] = ki;
      }
    }
    // Written byte by byte: for a buffer this small, the Buffer write methods' argument checks
    // and a native copy per config cost more than the bytes themselves.
    // Packed into one buffer kept for every call: evalPacked and packedTemplate copy it.
    const size = 4 + CONFIG_BYTES * confs.length + 2 * requests.length + 12 * limits;
    if (this.#packBuf.length < size) this.#packBuf = new Uint8Array(Math.max(size, 2 * this.#packBuf.length));
    const packed = this.#packBuf;
    putU16(packed, 0, confs.length);
    putU16(packed, 2, requests.length);
    let o = 4;
    for (const conf of confs) {
      const bytes = conf.bytes;
      for (let i = 0; i < CONFIG_BYTES; i++) packed[o + i] = bytes[i]!;
      o += CONFIG_BYTES;
    }
    n = 0;
    for (const entries of requests) {
      // the flags byte is written once the costs are seen: + 4 when every cost is 1, which
      // spares the script's short path reading them
      const head = o;
      let unit = 4;
      packed[o + 1] = entries.length;
      o += 2;
      for (const e of entries) {
        putU16(packed, o, idx[n++]!);
        putU16(packed, o + 2, idx[n++]!);
        if (e.cost === 1) {
          // 1.0 as a little-endian double, the common case
          packed[o + 4] = 0;
          packed[o + 5] = 0;
          packed[o + 6] = 0;
          packed[o + 7] = 0;
          packed[o + 8] = 0;
          packed[o + 9] = 0;
          packed[o + 10] = 0xf0;
          packed[o + 11] = 0x3f;
        } else {
          unit = 0;
          this.#costView.setFloat64(0, e.cost, true);
          for (let i = 0; i < 8; i++) packed[o + 4 + i] = this.#costBytes[i]!;
        }
        o += 12;
      }
      packed[head] = (charge ? 1 : 0) + (stamps ? 2 : 0) + unit;
    }
    return { keys, ttls, size, limits };
  }

  #parse(requests: Entry[][], limits: number, raw: Buffer, stamps: boolean): Outcome[] {
    const d = this.#load(requests, limits, raw, stamps);
    const len = raw.length / 8;
    const per = stamps ? 1 : 0;
    const at = d[0]!;
    const out: Outcome[] = new Array(requests.length);
    let b = 1;
    for (let r = 0; r < requests.length; r++) {
      const n = requests[r]!.length;
      const allowed = d[b] === 1;
      b += 2;
      const verdicts: Verdict[] = new Array(n);
      for (let i = 0; i < n; i++) {
        const first = d[b]!;
        if (first >= 0) {
          verdicts[i] = {
            at,
            ok: true,
            remaining: first,
            resetMs: d[b + 1]!,
            retryMs: 0,
            retry1Ms: 0,
            stamp: stamps ? d[b + 2]! : 0,
          };
          b += 2 + per;
        } else {
          verdicts[i] = {
            at,
            ok: false,
            remaining: -1 - first,
            resetMs: d[b + 1]!,
            retryMs: d[b + 2]!,
            retry1Ms: d[b + 3]!,
            stamp: stamps ? d[b + 4]! : 0,
          };
          b += 4 + per;
        }
      }
      out[r] = { allowed, verdicts };
    }
    if (b !== len) throw this.#badReply();
    return out;
  }

  /**
   * Check a check-n reply's shape and copy its values into the scratch array, which the caller
   * reads before anything else can reuse it. Every value is a little-endian double; see the
   * script for the layout.
   */
  #load(requests: Entry[][], limits: number, raw: Buffer, stamps: boolean): Float64Array {
    // An admitted limit carries 2 values and a rejected one 4, each one more with stamps (see
    // check-n.lua), so the reply holds between these two counts; the walk below checks that it
    // ends exactly at the last value.
    const len = raw.length / 8;
    const per = stamps ? 1 : 0;
    const fixed = 1 + 2 * requests.length;
    if (!Number.isInteger(len) || len < fixed + (2 + per) * limits || len > fixed + (4 + per) * limits) {
      throw this.#badReply();
    }
    // One copy into an aligned scratch array beats a readDoubleLE per value (the reply slice is
    // rarely 8-byte aligned); the script packs little-endian, so big-endian hosts read bytewise.
    if (this.#scratch.length < len) {
      this.#scratch = new Float64Array(len);
      this.#scratchBytes = new Uint8Array(this.#scratch.buffer);
    }
    const d = this.#scratch;
    if (LITTLE_ENDIAN) this.#scratchBytes.set(raw);
    else for (let k = 0; k < len; k++) d[k] = raw.readDoubleLE(8 * k);
    let b = 1;
    for (let r = 0; r < requests.length; r++) {
      const n = requests[r]!.length;
      b += 2;
      for (let i = 0; i < n; i++) {
        b += (d[b]! >= 0 ? 2 : 4) + per;
        if (b > len) throw this.#badReply();
      }
    }
    if (b !== len) throw this.#badReply();
    return d;
  }

  #badReply(): ShoalError {
    return new ShoalError('store.script_failed', `Lua script ${this.#check.name}: unexpected reply`);
  }

  /**
   * One script when all keys share a slot (always, on a single node or with `shared` keys);
   * otherwise one script per slot in parallel, then a refund to the slots that charged when any
   * slot rejected, so the end state is all-or-nothing.
   */
  async #evaluate(entries: Entry[], charge: boolean): Promise<Verdict[]> {
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
        args.push(ALG_CODE[e.def.algorithm], e.conf.requests, e.conf.windowMs, e.cost, verdicts[i]!.stamp);
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
    return limitResult(e, v.ok, v.remaining, v.resetMs, v.retryMs);
  }

  #finish(entries: Entry[], verdicts: Verdict[], source: 'redis' | 'fallback'): Decision {
    const limits: LimitResult[] = new Array(entries.length);
    for (let i = 0; i < entries.length; i++) {
      const e = entries[i]!;
      const v = verdicts[i]!;
      limits[i] = this.#result(e, v);
      if (source === 'redis' && !v.ok) this.#blockLocally(e, v.retry1Ms);
    }
    return this.#conclude(limits, source, verdicts[0]?.at);
  }

  /**
   * Redis rejected `e`: answer its key in-process until a cost of 1 fits again (`retry1Ms`), for
   * an enforcing limit whose key can ever admit again.
   */
  #blockLocally(e: Entry, retry1Ms: number): void {
    if (e.conf.mode === 'enforce' && retry1Ms > 0) {
      this.#blockCache.set(cacheKeyOf(e), this.#clock() + retry1Ms);
    }
  }

  /**
   * {@link #finish} for one request of a batch reply, read straight from the reply's values (see
   * {@link #load}) from index `b`, with no verdict objects in between.
   */
  #finishReply(entries: Entry[], d: Float64Array, b: number): Decision {
    const limits: LimitResult[] = new Array(entries.length);
    for (let i = 0; i < entries.length; i++) {
      const e = entries[i]!;
      const first = d[b]!;
      if (first >= 0) {
        limits[i] = limitResult(e, true, first, d[b + 1]!, 0);
        b += 2;
      } else {
        limits[i] = limitResult(e, false, -1 - first, d[b + 1]!, d[b + 2]!);
        this.#blockLocally(e, d[b + 3]!);
        b += 4;
      }
    }
    return this.#conclude(limits, 'redis', d[0]);
  }

  /**
   * Count and audit a decision's limits, and make the decision: rejected by the first enforcing
   * limit that rejected, retried after the longest wait among those.
   */
  #conclude(limits: LimitResult[], source: 'redis' | 'fallback', at: number | undefined): Decision {
    let rejectedBy: string | undefined;
    let retryAfterMs = 0;
    for (const r of limits) {
      if (r.allowed || r.mode !== 'enforce') continue;
      rejectedBy ??= r.name;
      retryAfterMs = Math.max(retryAfterMs, r.retryAfterMs);
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
      at,
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
          remaining: e.conf.requests,
          resetMs: e.conf.windowMs,
          retryMs: 0,
          retry1Ms: 0,
          stamp: 0,
        };
      } else {
        verdicts[i] = { ok: false, remaining: 0, resetMs: 1000, retryMs: 1000, retry1Ms: 0, stamp: 0 };
        if (e.conf.mode === 'enforce' && closedBy === undefined) closedBy = e.def.name;
      }
    });
    if (localIdx.length > 0) {
      const res = this.#local.check(
        localIdx.map((i) => {
          const e = entries[i]!;
          return {
            key: cacheKeyOf(e),
            requests: e.conf.requests,
            windowMs: e.conf.windowMs,
            cost: closedBy ? 0 : e.cost,
          };
        }),
      );
      localIdx.forEach((i, j) => {
        const [ok, remaining, retry] = res[j]!;
        const e = entries[i]!;
        verdicts[i] = { ok, remaining, resetMs: e.conf.windowMs, retryMs: retry, retry1Ms: 0, stamp: 0 };
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
    // No entry when a runtime override disables the limit: the state is still worth reporting.
    const stored = entries[0] ? '' : subjectOf(subject, this.#maxSubject);
    const e = entries[0] ?? {
      def,
      conf: this.#baseConfigs.get(def)!,
      subject: stored,
      key: this.keys.state(limit, stored),
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
      requests: e.conf.requests,
      windowMs: e.conf.windowMs,
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
