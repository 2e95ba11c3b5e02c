/**
 * The app model: what `shoal.config.ts` describes (resources, services, replicas, ports, health,
 * dependencies) and its validation. Validation reports every problem at once, each naming the
 * config file, the field path, what was expected and what was found, so a config is fixed in one pass.
 */
import { z } from 'zod';
import { parseDuration } from '../config/index.js';
import { ShoalError } from '../errors.js';
import type { Strategy } from './balancer/backends.js';

/** A duration: milliseconds as a number, or a string such as `500ms`, `5s`, `2m`. */
export type Duration = number | string;

/** How a service's balancer picks a replica for each request. */
export type BalancingStrategy = Strategy;

/** One service as written in `shoal.config.ts`. */
export interface ServiceConfig {
  /** The command that starts one replica, e.g. `node dist/server.js` or `['node', 'dist/server.js']`. */
  command: string | string[];
  /** Working directory of the replicas, relative to the config file's directory. Default: that directory. */
  cwd?: string;
  /** How many identical replicas to run. Default 1. */
  replicas?: number;
  /** The public port the service's balancer listens on (0 = any free port). */
  port: number;
  /** Interface the balancer binds to. Default `127.0.0.1`. */
  host?: string;
  health?: {
    /** Readiness path polled by the balancer. Default `/health/ready`. */
    ready?: string;
    /** How often the balancer checks readiness. Default `1s`. */
    interval?: Duration;
    /** How long a new replica may take to become ready before it counts as a failed start. Default `30s`. */
    startupTimeout?: Duration;
  };
  /** Extra environment for every replica (the fleet's own variables such as PORT always win). */
  env?: Record<string, string | number | boolean>;
  /** Resources (`redis`, `postgres`) or services that must be ready before this service starts. */
  dependsOn?: string[];
  /** Passed to replicas as SHOAL_DRAIN_DELAY: how long a replica keeps serving after SIGTERM. */
  drainDelay?: Duration;
  /** How long a replica may take to exit after SIGTERM before it is killed. Default `10s`. */
  stopTimeout?: Duration;
  /** Largest request body the balancer accepts (bytes, or `512kb`, `10mb`); larger gets 413. */
  maxBodySize?: number | string;
  /** Default `least-outstanding`. */
  strategy?: BalancingStrategy;
  /** Cookie name for the `sticky` strategy. */
  stickyCookie?: string;
  /** Crash handling: restart with exponential backoff; `maxCrashes` within `window` -> crash-looping. */
  restart?: { maxCrashes?: number; window?: Duration; backoff?: Duration; maxBackoff?: Duration };
}

/** The whole app model as written in `shoal.config.ts`. */
export interface FleetConfig {
  /** A display name; defaults to the config directory's name. */
  name?: string;
  resources?: {
    /** `true` resolves Redis with the store resolver (REDIS_URL, a local server, or one it starts). */
    redis?: boolean | { url?: string };
    /** `true` resolves PostgreSQL; `allowPglite` permits the embedded fallback. */
    postgres?: boolean | { url?: string; allowPglite?: boolean };
  };
  /** Services by name (lowercase letters, digits, dashes). */
  services: Record<string, ServiceConfig>;
}

/** A validated service with every default applied; durations are milliseconds. */
export interface ServiceModel {
  name: string;
  command: string[];
  cwd: string | undefined;
  replicas: number;
  port: number;
  host: string;
  health: { ready: string; intervalMs: number; startupTimeoutMs: number };
  env: Record<string, string>;
  dependsOn: string[];
  drainDelayMs: number | undefined;
  stopTimeoutMs: number;
  maxBodyBytes: number | undefined;
  strategy: BalancingStrategy;
  stickyCookie: string | undefined;
  restart: { maxCrashes: number; windowMs: number; backoffMs: number; maxBackoffMs: number };
}

/** A validated fleet; `services` is in start order (dependencies first). */
export interface FleetModel {
  name: string | undefined;
  resources: {
    redis: { url: string | undefined } | undefined;
    postgres: { url: string | undefined; allowPglite: boolean } | undefined;
  };
  services: ServiceModel[];
}

/**
 * Declare a fleet with type checking; returns its argument unchanged. Use it as the default export
 * of `shoal.config.ts`.
 *
 * @example
 * import { defineFleet } from 'shoal/fleet';
 * export default defineFleet({
 *   resources: { redis: true, postgres: true },
 *   services: {
 *     api: { command: 'node dist/server.js', replicas: 3, port: 8080, dependsOn: ['redis', 'postgres'] },
 *   },
 * });
 */
export function defineFleet(config: FleetConfig): FleetConfig {
  return config;
}

const RESOURCE_NAMES = ['redis', 'postgres'] as const;
/**
 * Variables the fleet sets per replica that a service's `env` may not override: the fleet's
 * routing and identity depend on them. (`SHOAL_SERVICE` may be overridden: it is only a label.)
 */
const FLEET_OWNED_ENV = ['PORT', 'SHOAL_INSTANCE_ID', 'SHOAL_REPLICA_INDEX', 'SHOAL_REPLICAS'] as const;
const SERVICE_NAME = /^[a-z][a-z0-9-]{0,39}$/;

const duration = z.union([z.number(), z.string()]).transform((v, ctx) => {
  const ms = typeof v === 'number' ? (Number.isSafeInteger(v) && v >= 0 ? v : undefined) : parseDuration(v);
  if (ms === undefined) {
    ctx.addIssue({ code: 'custom', message: 'a duration such as 500ms, 5s, 2m or a number of milliseconds' });
    return z.NEVER;
  }
  return ms;
});

const SIZE_UNITS: Record<string, number> = { b: 1, kb: 1024, mb: 1024 ** 2, gb: 1024 ** 3 };
const byteSize = z.union([z.number(), z.string()]).transform((v, ctx) => {
  let n: number | undefined;
  if (typeof v === 'number') n = v;
  else {
    const m = /^\s*(\d+(?:\.\d+)?)\s*(b|kb|mb|gb)?\s*$/i.exec(v);
    if (m) n = Math.floor(Number(m[1]) * (SIZE_UNITS[(m[2] ?? 'b').toLowerCase()] ?? 1));
  }
  if (n === undefined || !Number.isSafeInteger(n) || n < 1) {
    ctx.addIssue({ code: 'custom', message: 'a positive size in bytes, or a string such as 512kb or 10mb' });
    return z.NEVER;
  }
  return n;
});

const intIn = (min: number, max: number) =>
  z
    .number({ message: `an integer from ${min} to ${max}` })
    .refine((n) => Number.isInteger(n) && n >= min && n <= max, {
      message: `an integer from ${min} to ${max}`,
    });

const urlPath = z
  .string()
  .refine((s) => s.startsWith('/'), { message: 'a path starting with "/", such as /health/ready' });

const serviceSchema = z.strictObject({
  command: z.union([z.string().trim().min(1), z.array(z.string().min(1)).min(1)], {
    message: 'a command line string such as "node dist/server.js", or an array of arguments',
  }),
  cwd: z.string().min(1).optional(),
  replicas: intIn(1, 64).default(1),
  port: intIn(0, 65535),
  host: z.string().min(1).default('127.0.0.1'),
  health: z
    .strictObject({
      ready: urlPath.default('/health/ready'),
      interval: duration.default(1000),
      startupTimeout: duration.default(30_000),
    })
    .prefault({}),
  env: z
    .record(
      z.string(),
      z.union([z.string(), z.number(), z.boolean()], { message: 'a string, number or boolean' }),
    )
    .default({}),
  dependsOn: z.array(z.string(), { message: 'an array of resource or service names' }).default([]),
  drainDelay: duration.optional(),
  stopTimeout: duration.default(10_000),
  maxBodySize: byteSize.optional(),
  strategy: z
    .enum(['least-outstanding', 'round-robin', 'sticky'], {
      message: 'one of "least-outstanding", "round-robin", "sticky"',
    })
    .default('least-outstanding'),
  stickyCookie: z
    .string()
    .regex(/^[!#$%&'*+.^_`|~0-9A-Za-z-]+$/, { message: 'a cookie name (letters, digits, - _ .)' })
    .optional(),
  restart: z
    .strictObject({
      maxCrashes: intIn(1, 1000).default(5),
      window: duration.default(30_000),
      backoff: duration.default(250),
      maxBackoff: duration.default(10_000),
    })
    .prefault({}),
});

const fleetSchema = z.strictObject({
  name: z.string().min(1).optional(),
  resources: z
    .strictObject({
      redis: z
        .union([z.boolean(), z.strictObject({ url: z.string().min(1).optional() })], {
          message: 'true, false or { url }',
        })
        .optional(),
      postgres: z
        .union(
          [
            z.boolean(),
            z.strictObject({ url: z.string().min(1).optional(), allowPglite: z.boolean().optional() }),
          ],
          { message: 'true, false or { url, allowPglite }' },
        )
        .optional(),
    })
    .prefault({}),
  services: z.record(z.string(), serviceSchema, { message: 'an object mapping service names to services' }),
});

/** One validation problem: where, what was expected, what was found. */
export interface ConfigIssue {
  path: string;
  expected: string;
  found: string;
}

function describe(v: unknown): string {
  if (v === undefined) return 'nothing';
  if (v === null) return 'null';
  if (Array.isArray(v)) return `an array of ${v.length}`;
  if (typeof v === 'object') return 'an object';
  if (typeof v === 'string') return JSON.stringify(v.length > 60 ? v.slice(0, 57) + '...' : v);
  if (typeof v === 'function') return 'a function';
  return `${typeof v} ${String(v)}`;
}

function at(root: unknown, path: readonly PropertyKey[]): unknown {
  let cur = root;
  for (const key of path) {
    if (cur === null || typeof cur !== 'object') return undefined;
    cur = (cur as Record<PropertyKey, unknown>)[key as string];
  }
  return cur;
}

function formatPath(path: readonly PropertyKey[]): string {
  let out = '';
  for (const key of path) {
    if (typeof key === 'number') out += `[${key}]`;
    else out += out === '' ? String(key) : `.${String(key)}`;
  }
  return out === '' ? '(root)' : out;
}

function closest(word: string, options: readonly string[]): string | undefined {
  const dist = (a: string, b: string): number => {
    const dp = Array.from({ length: b.length + 1 }, (_, j) => j);
    for (let i = 1; i <= a.length; i++) {
      let prev = dp[0]!;
      dp[0] = i;
      for (let j = 1; j <= b.length; j++) {
        const tmp = dp[j]!;
        dp[j] = Math.min(dp[j]! + 1, dp[j - 1]! + 1, prev + (a[i - 1] === b[j - 1] ? 0 : 1));
        prev = tmp;
      }
    }
    return dp[b.length]!;
  };
  let best: string | undefined;
  let bestD = 3;
  for (const o of options) {
    const d = dist(word.toLowerCase(), o.toLowerCase());
    if (d < bestD) {
      best = o;
      bestD = d;
    }
  }
  return best;
}

function knownKeys(path: readonly PropertyKey[]): string[] {
  const p = path.filter((k) => typeof k === 'string') as string[];
  if (p.length === 0) return Object.keys(fleetSchema.shape);
  if (p.length === 1 && p[0] === 'resources') return [...RESOURCE_NAMES];
  if (p[0] === 'services' && p.length === 2) return Object.keys(serviceSchema.shape);
  if (p[0] === 'services' && p.length === 3 && p[2] === 'health')
    return ['ready', 'interval', 'startupTimeout'];
  if (p[0] === 'services' && p.length === 3 && p[2] === 'restart')
    return ['maxCrashes', 'window', 'backoff', 'maxBackoff'];
  if (p[0] === 'resources' && p[1] === 'postgres') return ['url', 'allowPglite'];
  if (p[0] === 'resources' && p[1] === 'redis') return ['url'];
  return [];
}

function issuesFromZod(error: z.ZodError, raw: unknown): ConfigIssue[] {
  const out: ConfigIssue[] = [];
  for (const issue of error.issues) {
    if (issue.code === 'unrecognized_keys') {
      const known = knownKeys(issue.path);
      for (const key of issue.keys) {
        const guess = closest(key, known);
        out.push({
          path: formatPath([...issue.path, key]),
          expected: guess
            ? `no such field (did you mean "${guess}"?)`
            : `one of the known fields: ${known.join(', ') || '(none)'}`,
          found: describe(at(raw, [...issue.path, key])),
        });
      }
      continue;
    }
    let expected = issue.message;
    if (issue.code === 'invalid_type') {
      expected = /^Invalid input/.test(issue.message) ? `${issue.expected}` : issue.message;
      if (at(raw, issue.path) === undefined) expected += ' (required)';
    } else if (issue.code === 'too_small' && issue.origin === 'string') expected = 'a non-empty string';
    else if (issue.code === 'too_small' && issue.origin === 'array') expected = 'a non-empty array';
    out.push({ path: formatPath(issue.path), expected, found: describe(at(raw, issue.path)) });
  }
  return out;
}

/** Split a command line into arguments, honouring single and double quotes (no shell involved). */
export function splitCommand(line: string): string[] {
  const args: string[] = [];
  let cur = '';
  let quote: '"' | "'" | undefined;
  let has = false;
  for (let i = 0; i < line.length; i++) {
    const ch = line[i]!;
    if (quote) {
      if (ch === quote) quote = undefined;
      else if (ch === '\\' && quote === '"' && i + 1 < line.length) cur += line[++i];
      else cur += ch;
    } else if (ch === '"' || ch === "'") {
      quote = ch;
      has = true;
    } else if (/\s/.test(ch)) {
      if (has || cur !== '') args.push(cur);
      cur = '';
      has = false;
    } else if (ch === '\\' && i + 1 < line.length) {
      cur += line[++i];
      has = true;
    } else {
      cur += ch;
      has = true;
    }
  }
  if (quote) throw new Error(`unterminated ${quote} quote`);
  if (has || cur !== '') args.push(cur);
  return args;
}

/**
 * Validate a raw config object (what the config file exported). Throws one `fleet.config_invalid`
 * ShoalError listing every problem as `file: path: expected X, found Y`.
 *
 * @example
 * const model = validateFleet(await import('./shoal.config.js').then((m) => m.default), 'shoal.config.js');
 */
export function validateFleet(raw: unknown, file: string): FleetModel {
  const result = fleetSchema.safeParse(raw);
  const issues: ConfigIssue[] = result.success ? [] : issuesFromZod(result.error, raw);
  if (!result.success) throw invalid(file, issues);
  const data = result.data;

  const serviceNames = Object.keys(data.services);
  if (serviceNames.length === 0) {
    issues.push({ path: 'services', expected: 'at least one service', found: 'an empty object' });
  }
  const declaredResources = RESOURCE_NAMES.filter((r) => {
    const v = data.resources[r];
    return v !== undefined && v !== false;
  });
  const ports = new Map<number, string>();
  const services: ServiceModel[] = [];
  for (const name of serviceNames) {
    const s = data.services[name]!;
    const base = `services.${name}`;
    if (!SERVICE_NAME.test(name)) {
      issues.push({
        path: base,
        expected: 'a service name of lowercase letters, digits and dashes, starting with a letter',
        found: describe(name),
      });
    }
    if ((RESOURCE_NAMES as readonly string[]).includes(name)) {
      issues.push({ path: base, expected: 'a name that is not a resource name', found: describe(name) });
    }
    let command: string[] = [];
    if (Array.isArray(s.command)) command = s.command;
    else {
      try {
        command = splitCommand(s.command);
      } catch (err) {
        issues.push({
          path: `${base}.command`,
          expected: `a well-formed command line (${(err as Error).message})`,
          found: describe(s.command),
        });
      }
    }
    if (s.port !== 0) {
      const other = ports.get(s.port);
      if (other) {
        issues.push({
          path: `${base}.port`,
          expected: `a port not already used by service "${other}"`,
          found: describe(s.port),
        });
      } else ports.set(s.port, name);
    }
    s.dependsOn.forEach((dep, i) => {
      const path = `${base}.dependsOn[${i}]`;
      if (dep === name)
        issues.push({ path, expected: 'another service or a resource', found: describe(dep) });
      else if ((RESOURCE_NAMES as readonly string[]).includes(dep)) {
        if (!declaredResources.includes(dep as (typeof RESOURCE_NAMES)[number])) {
          issues.push({
            path,
            expected: `a declared resource (add resources.${dep}: true)`,
            found: describe(dep),
          });
        }
      } else if (!serviceNames.includes(dep)) {
        const known = [...declaredResources, ...serviceNames.filter((n) => n !== name)];
        issues.push({
          path,
          expected: `one of: ${known.map((k) => `"${k}"`).join(', ') || '(nothing declared)'}`,
          found: describe(dep),
        });
      }
    });
    if (s.stickyCookie !== undefined && s.strategy !== 'sticky') {
      issues.push({
        path: `${base}.stickyCookie`,
        expected: 'strategy "sticky" when a sticky cookie is set',
        found: `strategy ${describe(s.strategy)}`,
      });
    }
    if (s.restart.maxBackoff < s.restart.backoff) {
      issues.push({
        path: `${base}.restart.maxBackoff`,
        expected: `a duration >= restart.backoff (${s.restart.backoff}ms)`,
        found: `${s.restart.maxBackoff}ms`,
      });
    }
    const env: Record<string, string> = {};
    for (const [k, v] of Object.entries(s.env)) {
      if ((FLEET_OWNED_ENV as readonly string[]).includes(k)) {
        issues.push({
          path: `${base}.env.${k}`,
          expected: `no ${k}: the fleet sets it for every replica (${FLEET_OWNED_ENV.join(', ')})`,
          found: describe(v),
        });
      }
      env[k] = String(v);
    }
    services.push({
      name,
      command,
      cwd: s.cwd,
      replicas: s.replicas,
      port: s.port,
      host: s.host,
      health: {
        ready: s.health.ready,
        intervalMs: s.health.interval,
        startupTimeoutMs: s.health.startupTimeout,
      },
      env,
      dependsOn: s.dependsOn,
      drainDelayMs: s.drainDelay,
      stopTimeoutMs: s.stopTimeout,
      maxBodyBytes: s.maxBodySize,
      strategy: s.strategy,
      stickyCookie: s.stickyCookie,
      restart: {
        maxCrashes: s.restart.maxCrashes,
        windowMs: s.restart.window,
        backoffMs: s.restart.backoff,
        maxBackoffMs: s.restart.maxBackoff,
      },
    });
  }

  // Dependencies first; a cycle is a config error naming the loop.
  const ordered: ServiceModel[] = [];
  const state = new Map<string, 'visiting' | 'done'>();
  const byName = new Map(services.map((s) => [s.name, s]));
  const visit = (s: ServiceModel, trail: string[]): void => {
    const st = state.get(s.name);
    if (st === 'done') return;
    if (st === 'visiting') {
      const loop = [...trail.slice(trail.indexOf(s.name)), s.name];
      issues.push({
        path: `services.${s.name}.dependsOn`,
        expected: 'no dependency cycle',
        found: `the cycle ${loop.join(' -> ')}`,
      });
      return;
    }
    state.set(s.name, 'visiting');
    for (const dep of s.dependsOn) {
      const d = byName.get(dep);
      if (d) visit(d, [...trail, s.name]);
    }
    state.set(s.name, 'done');
    ordered.push(s);
  };
  for (const s of services) visit(s, []);

  if (issues.length > 0) throw invalid(file, issues);

  const redis = data.resources.redis;
  const postgres = data.resources.postgres;
  return {
    name: data.name,
    resources: {
      redis:
        redis === undefined || redis === false ? undefined : { url: redis === true ? undefined : redis.url },
      postgres:
        postgres === undefined || postgres === false
          ? undefined
          : postgres === true
            ? { url: undefined, allowPglite: false }
            : { url: postgres.url, allowPglite: postgres.allowPglite ?? false },
    },
    services: ordered,
  };
}

function invalid(file: string, issues: ConfigIssue[]): ShoalError {
  const lines = issues.map((i) => `  ${file}: ${i.path}: expected ${i.expected}, found ${i.found}`);
  return new ShoalError(
    'fleet.config_invalid',
    `Invalid fleet config ${file} (${issues.length} problem${issues.length === 1 ? '' : 's'}):\n${lines.join('\n')}`,
    { detail: { file, issues } },
  );
}
