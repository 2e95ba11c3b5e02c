/**
 * One schema for every environment variable the toolkit reads.
 *
 * `loadConfig()` validates all of them at once and throws a single {@link ShoalError}
 * (`config.invalid`) whose message lists every bad variable, what it expects and what it got,
 * so an operator fixes the environment in one pass instead of one crash per variable.
 */
import { randomBytes } from 'node:crypto';
import { hostname } from 'node:os';
import { z } from 'zod';
import { ShoalError } from '../errors.js';
import { parseRedisUrl } from '../stores/redis/url.js';

/**
 * Parse a duration: a bare integer is milliseconds; `ms`, `s`, `m`, `h` suffixes are accepted.
 * Undefined when the text is not a duration.
 *
 * @example
 * parseDuration('1.5s'); // 1500
 * parseDuration('250'); // 250
 * parseDuration('soon'); // undefined
 */
export function parseDuration(input: string): number | undefined {
  const m = /^\s*(\d+(?:\.\d+)?)\s*(ms|s|m|h)?\s*$/.exec(input);
  if (!m) return undefined;
  const n = Number(m[1]);
  const unit = m[2] ?? 'ms';
  const factor = unit === 'ms' ? 1 : unit === 's' ? 1000 : unit === 'm' ? 60_000 : 3_600_000;
  const ms = Math.round(n * factor);
  return Number.isSafeInteger(ms) ? ms : undefined;
}

const duration = (def: string) =>
  z
    .string()
    .default(def)
    .transform((v, ctx) => {
      const ms = parseDuration(v);
      if (ms === undefined) {
        ctx.addIssue({
          code: 'custom',
          message: 'a duration such as 500ms, 5s, 2m or a number of milliseconds',
        });
        return z.NEVER;
      }
      return ms;
    });

const int = (def: number, min: number, max = Number.MAX_SAFE_INTEGER) =>
  z
    .string()
    .default(String(def))
    .transform((v, ctx) => {
      const n = /^\s*-?\d+\s*$/.test(v) ? Number(v) : Number.NaN;
      if (!Number.isSafeInteger(n) || n < min || n > max) {
        ctx.addIssue({
          code: 'custom',
          message:
            max === Number.MAX_SAFE_INTEGER ? `an integer >= ${min}` : `an integer from ${min} to ${max}`,
        });
        return z.NEVER;
      }
      return n;
    });

const url = (protocols: string[], what: string) =>
  z
    .string()
    .optional()
    .transform((v, ctx) => {
      if (v === undefined || v.trim() === '') return undefined;
      let parsed: URL;
      try {
        parsed = new URL(v);
      } catch {
        ctx.addIssue({ code: 'custom', message: what });
        return z.NEVER;
      }
      if (!protocols.includes(parsed.protocol)) {
        ctx.addIssue({ code: 'custom', message: what });
        return z.NEVER;
      }
      return v;
    });

const LOG_LEVELS = ['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent'] as const;

const schema = z.object({
  SHOAL_SERVICE: z.string().min(1, 'a non-empty service name').default('app'),
  SHOAL_INSTANCE_ID: z
    .string()
    .regex(/^[A-Za-z0-9._:-]{1,128}$/, '1-128 characters from A-Z a-z 0-9 . _ : -')
    .optional(),
  SHOAL_REPLICAS: int(1, 1, 10_000),
  SHOAL_REPLICA_INDEX: int(0, 0, 10_000),
  PORT: int(3000, 0, 65_535),
  HOST: z.string().min(1).default('0.0.0.0'),
  REDIS_URL: z
    .string()
    .optional()
    .transform((v, ctx) => {
      if (v === undefined || v.trim() === '') return undefined;
      const parsed = parseRedisUrl(v);
      if ('error' in parsed) {
        ctx.addIssue({ code: 'custom', message: `a Redis URL (${parsed.error})` });
        return z.NEVER;
      }
      return v;
    }),
  DATABASE_URL: url(['postgres:', 'postgresql:'], 'a postgres:// or postgresql:// URL'),
  DB_POOL_MIN: int(0, 0, 1000),
  DB_POOL_MAX: int(10, 1, 1000),
  DB_POOL_IDLE: duration('10s'),
  DB_POOL_LIFETIME: duration('0'),
  DB_CONNECT_TIMEOUT: duration('5s'),
  LOG_LEVEL: z.enum(LOG_LEVELS, { message: `one of ${LOG_LEVELS.join(', ')}` }).default('info'),
  SHOAL_DRAIN_DELAY: duration('5s'),
  SHOAL_SHUTDOWN_TIMEOUT: duration('30s'),
  SHOAL_KEEPALIVE_TIMEOUT: duration('65s'),
  SHOAL_HEADERS_TIMEOUT: duration('66s'),
  SHOAL_HEALTH_INTERVAL: duration('2s'),
  SHOAL_HEALTH_TIMEOUT: duration('1s'),
  SHOAL_TRUSTED_PROXIES: z.string().default('loopback'),
  SHOAL_ADMIN_TOKEN: z.string().min(16, 'at least 16 characters').optional(),
  OTEL_EXPORTER_OTLP_ENDPOINT: url(['http:', 'https:'], 'an http:// or https:// URL'),
});

/** The validated configuration. Durations are milliseconds. */
export interface ShoalConfig {
  service: string;
  instanceId: string;
  replicas: number;
  replicaIndex: number;
  port: number;
  host: string;
  redisUrl: string | undefined;
  databaseUrl: string | undefined;
  db: { poolMin: number; poolMax: number; idleMs: number; lifetimeMs: number; connectTimeoutMs: number };
  logLevel: (typeof LOG_LEVELS)[number];
  shutdown: {
    drainDelayMs: number;
    timeoutMs: number;
    keepAliveTimeoutMs: number;
    headersTimeoutMs: number;
  };
  health: { intervalMs: number; timeoutMs: number };
  trustedProxies: string;
  adminToken: string | undefined;
  otlpEndpoint: string | undefined;
}

/** Names of every variable `loadConfig` reads; documented in docs/config.md. */
export const CONFIG_VARIABLES = Object.keys(schema.shape) as ReadonlyArray<keyof typeof schema.shape>;

function describeValue(v: unknown): string {
  if (v === undefined) return 'nothing (unset)';
  const s = String(v);
  // Values of secret-looking variables are never echoed, even when invalid.
  return JSON.stringify(s.length > 60 ? s.slice(0, 57) + '...' : s);
}

const SECRET_VARS = new Set(['SHOAL_ADMIN_TOKEN', 'DATABASE_URL', 'REDIS_URL']);

/**
 * Read and validate the environment. Throws one `config.invalid` error naming every bad variable.
 *
 * @example
 * const config = loadConfig(); // process.env
 * const test = loadConfig({ SHOAL_REPLICAS: '3', REDIS_URL: 'redis://127.0.0.1:6379' });
 */
export function loadConfig(env: Record<string, string | undefined> = process.env): ShoalConfig {
  const input: Record<string, string | undefined> = {};
  for (const key of CONFIG_VARIABLES) {
    const v = env[key];
    input[key] = v === '' && key !== 'SHOAL_SERVICE' ? undefined : v;
  }
  const result = schema.safeParse(input);
  if (!result.success) {
    const lines: string[] = [];
    const seen = new Set<string>();
    for (const issue of result.error.issues) {
      const key = String(issue.path[0] ?? '?');
      if (seen.has(key)) continue;
      seen.add(key);
      const got = SECRET_VARS.has(key) ? '(value hidden)' : describeValue(input[key]);
      lines.push(`  ${key}: expected ${issue.message}, got ${got}`);
    }
    throw new ShoalError(
      'config.invalid',
      `Invalid configuration (${lines.length} variable${lines.length === 1 ? '' : 's'}):\n${lines.join('\n')}`,
      { detail: { variables: [...seen] } },
    );
  }
  const e = result.data;
  const extra: string[] = [];
  if (e.DB_POOL_MIN > e.DB_POOL_MAX) {
    extra.push(`  DB_POOL_MIN: expected a value <= DB_POOL_MAX (${e.DB_POOL_MAX}), got ${e.DB_POOL_MIN}`);
  }
  if (e.SHOAL_REPLICA_INDEX >= e.SHOAL_REPLICAS && env.SHOAL_REPLICA_INDEX !== undefined) {
    extra.push(
      `  SHOAL_REPLICA_INDEX: expected a value < SHOAL_REPLICAS (${e.SHOAL_REPLICAS}), got ${e.SHOAL_REPLICA_INDEX}`,
    );
  }
  if (extra.length > 0) {
    throw new ShoalError(
      'config.invalid',
      `Invalid configuration (${extra.length} variable${extra.length === 1 ? '' : 's'}):\n${extra.join('\n')}`,
    );
  }
  return {
    service: e.SHOAL_SERVICE,
    instanceId: e.SHOAL_INSTANCE_ID ?? `${hostname()}-${process.pid}-${randomBytes(3).toString('hex')}`,
    replicas: e.SHOAL_REPLICAS,
    replicaIndex: e.SHOAL_REPLICA_INDEX,
    port: e.PORT,
    host: e.HOST,
    redisUrl: e.REDIS_URL,
    databaseUrl: e.DATABASE_URL,
    db: {
      poolMin: e.DB_POOL_MIN,
      poolMax: e.DB_POOL_MAX,
      idleMs: e.DB_POOL_IDLE,
      lifetimeMs: e.DB_POOL_LIFETIME,
      connectTimeoutMs: e.DB_CONNECT_TIMEOUT,
    },
    logLevel: e.LOG_LEVEL,
    shutdown: {
      drainDelayMs: e.SHOAL_DRAIN_DELAY,
      timeoutMs: e.SHOAL_SHUTDOWN_TIMEOUT,
      keepAliveTimeoutMs: e.SHOAL_KEEPALIVE_TIMEOUT,
      headersTimeoutMs: e.SHOAL_HEADERS_TIMEOUT,
    },
    health: { intervalMs: e.SHOAL_HEALTH_INTERVAL, timeoutMs: e.SHOAL_HEALTH_TIMEOUT },
    trustedProxies: e.SHOAL_TRUSTED_PROXIES,
    adminToken: e.SHOAL_ADMIN_TOKEN,
    otlpEndpoint: e.OTEL_EXPORTER_OTLP_ENDPOINT,
  };
}
