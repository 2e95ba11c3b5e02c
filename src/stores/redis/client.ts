/**
 * Redis connections from REDIS_URL (single, TLS, Sentinel, Cluster) with ioredis.
 */
import { Cluster, type ClusterOptions, Redis, type RedisOptions } from 'ioredis';
import { ShoalError } from '../../errors.js';
import { parseRedisUrl } from './url.js';

/** A single-node, Sentinel-backed or Cluster client; the toolkit accepts any of them. */
export type RedisClient = Redis | Cluster;

/** Options layered over what the URL says. */
export interface CreateRedisOptions {
  /** Prefix for the connection name shown by `CLIENT LIST` (helps find a replica's connections). */
  connectionName?: string;
  /**
   * Fail commands at once while disconnected instead of queueing them (default true):
   * a request must not wait for a reconnect that may never come; capabilities decide what to do.
   */
  failFast?: boolean;
  /** Extra ioredis options (single/Sentinel). */
  redis?: RedisOptions;
  /** Extra ioredis options (Cluster). */
  cluster?: ClusterOptions;
  /**
   * Receives connection errors (refused, reset, timeouts) while the client reconnects. Without it
   * ioredis prints them to the console; route them to your logger instead.
   */
  onError?: (err: Error) => void;
}

/**
 * Create an ioredis client from a URL in any of the documented forms.
 *
 * @example
 * const redis = createRedis(process.env.REDIS_URL ?? 'redis://127.0.0.1:6379', {
 *   connectionName: 'api-1',
 *   onError: (err) => log.warn({ err }, 'redis connection error'),
 * });
 * await redis.ping();
 */
export function createRedis(url: string, options: CreateRedisOptions = {}): RedisClient {
  const client = buildClient(url, options);
  if (options.onError) client.on('error', options.onError);
  return client;
}

function buildClient(url: string, options: CreateRedisOptions): RedisClient {
  const target = parseRedisUrl(url);
  if ('error' in target) {
    throw new ShoalError('config.invalid', `REDIS_URL: ${target.error}`);
  }
  const failFast = options.failFast ?? true;
  const common: RedisOptions = {
    connectionName: options.connectionName,
    // Reconnect forever with capped backoff; callers see failures through failFast, not hangs.
    retryStrategy: (times) => Math.min(50 * 2 ** Math.min(times, 6), 2000),
    enableOfflineQueue: !failFast,
    maxRetriesPerRequest: failFast ? 0 : 20,
    lazyConnect: false,
    ...options.redis,
  };
  if (target.kind === 'single') {
    return new Redis({
      ...common,
      host: target.host,
      port: target.port,
      db: target.db,
      username: target.username,
      password: target.password,
      tls: target.tls ? {} : undefined,
    });
  }
  if (target.kind === 'sentinel') {
    return new Redis({
      ...common,
      sentinels: target.sentinels,
      name: target.name,
      db: target.db,
      password: target.password,
      sentinelPassword: target.sentinelPassword,
      tls: target.tls ? {} : undefined,
    });
  }
  return new Cluster(target.nodes, {
    enableOfflineQueue: !failFast,
    clusterRetryStrategy: (times) => Math.min(100 * 2 ** Math.min(times, 5), 2000),
    redisOptions: {
      connectionName: options.connectionName,
      username: target.username,
      password: target.password,
      tls: target.tls ? {} : undefined,
      maxRetriesPerRequest: failFast ? 0 : 20,
      ...options.redis,
    },
    ...options.cluster,
  });
}

/**
 * Wait until a client is ready, or fail after `timeoutMs` with `store.unavailable`.
 *
 * @example
 * await waitForRedis(redis, 5000);
 */
export async function waitForRedis(client: RedisClient, timeoutMs = 5000): Promise<void> {
  if (client.status === 'ready') return;
  await new Promise<void>((resolve, reject) => {
    const timer = setTimeout(() => {
      cleanup();
      reject(
        new ShoalError(
          'store.unavailable',
          `Redis not ready after ${timeoutMs} ms (status ${client.status})`,
        ),
      );
    }, timeoutMs);
    const onReady = () => {
      cleanup();
      resolve();
    };
    const cleanup = () => {
      clearTimeout(timer);
      client.off('ready', onReady);
    };
    client.on('ready', onReady);
  });
}
