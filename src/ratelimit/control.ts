/**
 * Fleet-wide runtime configuration: per-limit ("context") and per-identity overrides in Redis
 * hashes with one version counter. A change bumps the version and publishes it; every instance
 * reloads on the message and also compares versions on a timer, so a missed message (subscriber
 * reconnecting, partition) is caught up within one poll interval.
 */
import { z } from 'zod';
import type { Logger } from '../contracts/index.js';
import { type RedisClient, waitForRedis } from '../stores/redis/client.js';
import type { KeySpace } from './keys.js';
import type { ContextOverride, RuntimeSnapshot } from './types.js';

/**
 * The admin body schema: `{ requests_per_minute, burst_size?, enabled?, mode? }`, nothing else.
 *
 * @example
 * overrideSchema.parse({ requests_per_minute: 50, burst_size: 10, enabled: true, mode: 'shadow' });
 */
export const overrideSchema = z.strictObject({
  requests_per_minute: z.number().int().min(1).max(1_000_000_000),
  burst_size: z.number().int().min(1).max(1_000_000_000).optional(),
  enabled: z.boolean().default(true),
  mode: z.enum(['enforce', 'shadow']).default('enforce'),
});

function parseStored(raw: string): ContextOverride | undefined {
  try {
    const r = overrideSchema.safeParse(JSON.parse(raw));
    return r.success ? r.data : undefined;
  } catch {
    return undefined;
  }
}

/** Event published on the limiter's channel. */
export type ControlEvent = { kind: 'version'; version: number } | { kind: 'key'; cacheKey: string };

/** Options of {@link RuntimeControl}. */
export interface RuntimeControlOptions {
  redis: RedisClient;
  keys: KeySpace;
  pollMs: number;
  logger: Logger;
  onChange: (snapshot: RuntimeSnapshot) => void;
  onKeyEvent: (cacheKey: string) => void;
}

/** Loads, watches and changes the runtime configuration of one limiter. */
export class RuntimeControl {
  snapshot: RuntimeSnapshot = { version: 0, contexts: new Map(), identities: new Map() };
  #sub: RedisClient | undefined;
  #timer: NodeJS.Timeout | undefined;
  #loading: Promise<void> | undefined;
  #closed = false;

  constructor(private readonly o: RuntimeControlOptions) {}

  /** Load once, subscribe, start polling. Never throws: without Redis the defaults apply. */
  async start(): Promise<void> {
    try {
      // A fail-fast client rejects commands until connected; give it a moment at startup.
      await waitForRedis(this.o.redis, 2000);
      await this.reload();
    } catch (err) {
      this.o.logger.warn(
        { event: 'ratelimit.config_unavailable', err: (err as Error).message },
        'rate-limit configuration not loaded; using defaults until Redis answers',
      );
    }
    if (this.#closed) return;
    const redis = this.o.redis;
    const sub =
      'isCluster' in redis && redis.isCluster
        ? redis.duplicate()
        : (redis as import('ioredis').Redis).duplicate({
            enableOfflineQueue: true,
            maxRetriesPerRequest: null,
          });
    this.#sub = sub;
    sub.on('error', () => {});
    sub.on('message', (_channel: string, message: string) => this.#onMessage(message));
    sub.subscribe(this.o.keys.channel).catch(() => {});
    this.#timer = setInterval(() => void this.#poll(), this.o.pollMs);
    this.#timer.unref();
  }

  async close(): Promise<void> {
    this.#closed = true;
    if (this.#timer) clearInterval(this.#timer);
    const sub = this.#sub;
    this.#sub = undefined;
    if (sub) sub.disconnect();
  }

  #onMessage(message: string): void {
    if (message.startsWith('v:')) {
      const v = Number(message.slice(2));
      if (v !== this.snapshot.version) void this.reload().catch(() => {});
    } else if (message.startsWith('k:')) {
      this.o.onKeyEvent(message.slice(2));
    }
  }

  async #poll(): Promise<void> {
    try {
      const raw = await this.o.redis.get(this.o.keys.version);
      const v = raw === null ? 0 : Number(raw);
      if (v !== this.snapshot.version) await this.reload();
    } catch {
      // Redis unreachable: keep the last known configuration; the next tick retries.
    }
  }

  /** Read the whole configuration (one MULTI so version and hashes agree). */
  reload(): Promise<void> {
    if (this.#loading) return this.#loading;
    this.#loading = (async () => {
      try {
        const k = this.o.keys;
        const res = await this.o.redis
          .multi()
          .get(k.version)
          .hgetall(k.contexts)
          .hgetall(k.identities)
          .exec();
        if (!res) throw new Error('configuration transaction aborted');
        for (const [err] of res) if (err) throw err;
        const version = res[0]![1] === null ? 0 : Number(res[0]![1]);
        const toMap = (h: unknown) => {
          const m = new Map<string, ContextOverride>();
          for (const [name, raw] of Object.entries((h ?? {}) as Record<string, string>)) {
            const o = parseStored(raw);
            if (o) m.set(name, o);
          }
          return m;
        };
        const next = { version, contexts: toMap(res[1]![1]), identities: toMap(res[2]![1]) };
        const changed = next.version !== this.snapshot.version;
        this.snapshot = next;
        if (changed) {
          this.o.logger.info(
            { event: 'ratelimit.config_applied', version },
            'rate-limit configuration applied',
          );
          this.o.onChange(next);
        }
      } finally {
        this.#loading = undefined;
      }
    })();
    return this.#loading;
  }

  /** Set or delete an override, bump the version, announce it, and apply it here at once. */
  async write(
    kind: 'context' | 'identity',
    name: string,
    value: ContextOverride | undefined,
  ): Promise<number> {
    const k = this.o.keys;
    const hash = kind === 'context' ? k.contexts : k.identities;
    const tx = this.o.redis.multi();
    if (value === undefined) tx.hdel(hash, name);
    else tx.hset(hash, name, JSON.stringify(value));
    tx.incr(k.version);
    const res = await tx.exec();
    if (!res) throw new Error('configuration transaction aborted');
    for (const [err] of res) if (err) throw err;
    const version = Number(res[1]![1]);
    await this.o.redis.publish(k.channel, `v:${version}`);
    await this.reload();
    return version;
  }

  /** Tell every instance (this one included) to drop its cached block of one key. */
  async announceKey(cacheKey: string): Promise<void> {
    this.o.onKeyEvent(cacheKey);
    await this.o.redis.publish(this.o.keys.channel, `k:${cacheKey}`);
  }
}
