/**
 * Find a Redis or PostgreSQL server to use, or start a private one: the same logic serves the
 * tests and the fleet CLI, so "works on my machine" and "works in CI" take the same path.
 *
 * Order: the URL given (option or REDIS_URL / DATABASE_URL), checked reachable; else a server on
 * the default local port; else a private server started from the installed binaries in a temp
 * directory on a free port; else (PostgreSQL, opt-in) embedded PGlite over the wire protocol;
 * else a `resolve.*_unavailable` error that says what to install or which variable to set.
 *
 * All state lives in the returned object: a started server is stopped and its directory deleted
 * by `stop()`, or when the owning process exits.
 */
import { type ChildProcess, spawn, spawnSync } from 'node:child_process';
import {
  accessSync,
  chownSync,
  closeSync,
  constants,
  mkdtempSync,
  openSync,
  readdirSync,
  readFileSync,
  rmSync,
} from 'node:fs';
import { tmpdir } from 'node:os';
import { delimiter, join } from 'node:path';
import { Redis } from 'ioredis';
import pg from 'pg';
import { ShoalError } from '../errors.js';
import { freePort } from '../util/net.js';
import { createRedis } from './redis/client.js';
import { parseRedisUrl } from './redis/url.js';

/** Where a resolved server came from. */
export type StoreSource = 'env' | 'local' | 'started' | 'pglite';

/** A server to connect to, and how to let go of it. */
export interface ResolvedStore {
  /** Connection URL (`redis://...` or `postgres://...`). */
  url: string;
  source: StoreSource;
  /** The private directory of a started server (deleted by `stop()` and at process exit). */
  dir?: string;
  /** Process id of a started server. */
  pid?: number;
  /** Stop a server this object started and delete its directory; a no-op for found servers. */
  stop(): Promise<void>;
}

/** Options shared by both resolvers. Every field is optional. */
export interface ResolveOptions {
  /** Use this URL (takes precedence over the environment variable). */
  url?: string;
  /** Environment to read REDIS_URL / DATABASE_URL and PATH from (default `process.env`). */
  env?: Record<string, string | undefined>;
  /** Try a server on the default local port (default true). */
  probeLocal?: boolean;
  /** The local port to probe (default 6379 / 5432). */
  localPort?: number;
  /** Start a private server when nothing is reachable (default true). */
  allowStart?: boolean;
  /** Directories searched for the server binaries instead of PATH (and the usual install places). */
  binDirs?: string[];
  /** Parent of the private directory (default the OS temp dir). */
  tmpDir?: string;
  /** Deadline of each reachability check (default 3000 ms). */
  timeoutMs?: number;
  /** Deadline for a started server to accept connections (default 30 s). */
  startTimeoutMs?: number;
  /** Progress lines ("starting a private redis-server on 127.0.0.1:40123"). */
  log?: (line: string) => void;
}

/** PostgreSQL-only options. */
export interface ResolvePostgresOptions extends ResolveOptions {
  /**
   * Fall back to embedded PGlite served over the wire protocol (needs the optional dependencies
   * `@electric-sql/pglite` and `@electric-sql/pglite-socket`). Default false: a development
   * fallback, single-process and in-memory, not a production database.
   */
  allowPglite?: boolean;
  /** Concurrent wire connections PGlite accepts (default 100); queries are serialised. */
  pgliteMaxConnections?: number;
}

const REDIS_INSTALL = 'install it (Debian/Ubuntu: apt-get install redis-server; macOS: brew install redis)';
const PG_INSTALL = 'install it (Debian/Ubuntu: apt-get install postgresql; macOS: brew install postgresql)';

/**
 * Hide the password part of a URL before it appears in a message.
 *
 * @example
 * redactUrl('postgres://app:s3cret@db:5432/orders'); // 'postgres://app:***@db:5432/orders'
 */
export function redactUrl(url: string): string {
  // Up to the LAST '@': an unencoded '/' or '@' inside a password must not end the match early
  // and leave the rest of the secret in clear. Over-hiding a path that happens to hold '@' is safe.
  return url.replace(/^([a-z][a-z0-9+.-]*:\/\/[^:@/]*:).*@/i, '$1***@');
}

const errMessage = (err: unknown) =>
  (err instanceof AggregateError && err.errors.length > 0
    ? String((err.errors[0] as Error).message)
    : err instanceof Error
      ? err.message || (err as NodeJS.ErrnoException).code || err.name
      : String(err)
  ).replace(/\.+$/, '');

function withTimeout<T>(p: Promise<T>, ms: number, what: string): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  return Promise.race([
    p,
    new Promise<never>((_, reject) => {
      // Let one more I/O poll run before giving up: when the event loop was blocked (a busy
      // process), the answer may be waiting on the socket while the timer is already due.
      timer = setTimeout(
        () => setImmediate(() => reject(new Error(`no answer within ${ms} ms (${what})`))),
        ms,
      );
    }),
  ]).finally(() => clearTimeout(timer));
}

/** Resolve when a Redis URL answers PING; reject with the reason otherwise. */
async function pingRedis(url: string, timeoutMs: number): Promise<void> {
  const target = parseRedisUrl(url);
  if ('error' in target) throw new Error(`invalid Redis URL: ${target.error}`);
  const noRetry = () => null;
  const client =
    target.kind === 'single'
      ? new Redis({
          host: target.host,
          port: target.port,
          username: target.username,
          password: target.password,
          db: target.db,
          tls: target.tls ? {} : undefined,
          lazyConnect: true,
          connectTimeout: timeoutMs,
          maxRetriesPerRequest: 0,
          retryStrategy: noRetry,
        })
      : createRedis(url, {
          failFast: false,
          redis: { connectTimeout: timeoutMs, retryStrategy: noRetry, sentinelRetryStrategy: noRetry },
          cluster: { clusterRetryStrategy: noRetry },
        });
  // ioredis reports a refused connection as "Connection is closed"; the socket error says why.
  let socketError: Error | undefined;
  client.on('error', (err: Error) => {
    socketError ??= err;
  });
  try {
    await withTimeout(
      (async () => {
        if (target.kind === 'single') await (client as Redis).connect();
        await client.ping();
      })(),
      timeoutMs,
      'PING',
    );
  } catch (err) {
    throw socketError ?? err;
  } finally {
    client.disconnect();
  }
}

/** Resolve when a PostgreSQL URL answers `SELECT 1`; reject with the reason otherwise. */
async function pingPostgres(url: string, timeoutMs: number): Promise<void> {
  const client = new pg.Client({
    connectionString: url,
    connectionTimeoutMillis: timeoutMs,
    query_timeout: timeoutMs,
  });
  client.on('error', () => {});
  try {
    await withTimeout(
      (async () => {
        await client.connect();
        await client.query('SELECT 1');
      })(),
      timeoutMs + 200,
      'SELECT 1',
    );
  } finally {
    await client.end().catch(() => {});
  }
}

function isExecutable(path: string): boolean {
  try {
    accessSync(path, constants.X_OK);
    return true;
  } catch {
    return false;
  }
}

function pathDirs(env: Record<string, string | undefined>): string[] {
  return (env.PATH ?? '').split(delimiter).filter((d) => d !== '');
}

/** Versioned install directories, newest first (Debian/Ubuntu layout, then the source-build default). */
function postgresInstallDirs(): string[] {
  const out: string[] = [];
  try {
    const versions = readdirSync('/usr/lib/postgresql')
      .filter((v) => /^\d+(\.\d+)?$/.test(v))
      .sort((a, b) => Number(b) - Number(a));
    for (const v of versions) out.push(`/usr/lib/postgresql/${v}/bin`);
  } catch {
    // not a Debian-style install
  }
  out.push('/usr/local/pgsql/bin');
  return out;
}

/** Is `pid` a live process? A zombie waiting to be reaped counts as gone. */
function isAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
  } catch (err) {
    return (err as NodeJS.ErrnoException).code === 'EPERM';
  }
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    return stat.slice(stat.lastIndexOf(')') + 2, stat.lastIndexOf(')') + 3) !== 'Z';
  } catch {
    return true;
  }
}

function sleepSync(ms: number): void {
  Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0, ms);
}

/** Signal a process and wait (synchronously: usable in an `exit` hook) until it is gone. */
function killSync(pid: number, signal: NodeJS.Signals, graceMs: number): void {
  try {
    process.kill(pid, signal);
  } catch {
    return;
  }
  const deadline = Date.now() + graceMs;
  while (isAlive(pid) && Date.now() < deadline) sleepSync(10);
  if (isAlive(pid)) {
    try {
      process.kill(pid, 'SIGKILL');
    } catch {
      return;
    }
    const hard = Date.now() + 2000;
    while (isAlive(pid) && Date.now() < hard) sleepSync(10);
  }
}

async function waitGone(pid: number, ms: number): Promise<boolean> {
  const deadline = Date.now() + ms;
  while (isAlive(pid)) {
    if (Date.now() > deadline) return false;
    await new Promise((r) => setTimeout(r, 20));
  }
  return true;
}

const OWN_HOOK = Symbol('shoal.resolve.hook');
type Hook = ((...args: unknown[]) => void) & { [OWN_HOOK]?: true };

/**
 * Run `cleanup` (synchronous) when the process exits or dies of SIGINT/SIGTERM; returns the
 * function that removes the hooks. On a signal, if the application has its own handler it owns
 * the shutdown (it may still be draining requests that need this server): cleanup then waits for
 * the `exit` event. With no handler of its own, cleanup runs and the signal is re-raised so the
 * process still terminates the way it would have.
 */
function installExitHooks(cleanup: () => void): () => void {
  const onExit: Hook = () => cleanup();
  const signals: NodeJS.Signals[] = ['SIGINT', 'SIGTERM'];
  const onSignal = new Map<NodeJS.Signals, Hook>();
  const remove = () => {
    process.removeListener('exit', onExit);
    for (const [sig, fn] of onSignal) process.removeListener(sig, fn);
  };
  for (const sig of signals) {
    const fn: Hook = () => {
      const foreign = process.listeners(sig).filter((l) => !(l as Hook)[OWN_HOOK]);
      if (foreign.length > 0) return;
      cleanup();
      remove();
      if (process.listenerCount(sig) === 0) process.kill(process.pid, sig);
    };
    fn[OWN_HOOK] = true;
    onSignal.set(sig, fn);
    process.on(sig, fn);
  }
  onExit[OWN_HOOK] = true;
  process.on('exit', onExit);
  return remove;
}

function found(url: string, source: StoreSource): ResolvedStore {
  return { url, source, stop: async () => {} };
}

interface RunResult {
  code: number | null;
  output: string;
}

/** Run a command to completion, collecting stdout+stderr (bounded), with a deadline. */
function run(
  cmd: string,
  args: string[],
  opts: { cwd?: string; timeoutMs: number; detached?: boolean },
): Promise<RunResult> {
  return new Promise((resolve) => {
    const child = spawn(cmd, args, {
      cwd: opts.cwd,
      stdio: ['ignore', 'pipe', 'pipe'],
      detached: opts.detached ?? false,
      env: cleanPgEnv(process.env),
    });
    let output = '';
    const add = (b: Buffer) => {
      output = (output + b.toString('utf8')).slice(-8000);
    };
    child.stdout?.on('data', add);
    child.stderr?.on('data', add);
    const timer = setTimeout(() => {
      output += `\n(killed after ${opts.timeoutMs} ms)`;
      child.kill('SIGKILL');
    }, opts.timeoutMs);
    child.on('error', (err) => {
      clearTimeout(timer);
      resolve({ code: -1, output: err.message });
    });
    child.on('close', (code) => {
      clearTimeout(timer);
      resolve({ code, output });
    });
  });
}

/** libpq variables of the caller must not steer the private server's tools. */
function cleanPgEnv(env: NodeJS.ProcessEnv): NodeJS.ProcessEnv {
  const out: NodeJS.ProcessEnv = {};
  for (const [k, v] of Object.entries(env)) if (!k.startsWith('PG')) out[k] = v;
  return out;
}

// ---------------------------------------------------------------------------------------------
// Redis

/**
 * Find or start a Redis server. See the module comment for the order.
 *
 * @example
 * const redis = await resolveRedis();            // REDIS_URL, else :6379, else a private server
 * const client = createRedis(redis.url);
 * // ...
 * await redis.stop();
 */
export async function resolveRedis(options: ResolveOptions = {}): Promise<ResolvedStore> {
  const env = options.env ?? process.env;
  const timeoutMs = options.timeoutMs ?? 3000;
  const given = options.url ?? (env.REDIS_URL?.trim() || undefined);
  if (given !== undefined) {
    const what = options.url !== undefined ? 'the Redis URL given' : 'REDIS_URL';
    try {
      await pingRedis(given, timeoutMs);
    } catch (err) {
      throw new ShoalError(
        'resolve.redis_unavailable',
        `${what} (${redactUrl(given)}) is not reachable: ${errMessage(err)}. ` +
          'Start that server, correct the URL, or unset REDIS_URL to let Shoal find or start a local one.',
        { cause: err },
      );
    }
    return found(given, 'env');
  }
  const reasons: string[] = ['REDIS_URL is not set'];
  if (options.probeLocal ?? true) {
    const local = `redis://127.0.0.1:${options.localPort ?? 6379}`;
    try {
      await pingRedis(local, timeoutMs);
      return found(local, 'local');
    } catch (err) {
      reasons.push(`nothing usable answers at ${local} (${errMessage(err)})`);
    }
  }
  if (options.allowStart ?? true) {
    const dirs = options.binDirs ?? pathDirs(env);
    const bin = dirs.map((d) => join(d, 'redis-server')).find(isExecutable);
    if (bin) return startRedis(bin, options);
    reasons.push(
      `redis-server is not installed (searched ${dirs.length > 0 ? dirs.join(delimiter) : 'no directories'})`,
    );
  } else {
    reasons.push('starting a private server is disabled');
  }
  throw new ShoalError(
    'resolve.redis_unavailable',
    `No Redis available: ${reasons.join('; ')}. Either ${REDIS_INSTALL}, or set REDIS_URL=redis://host:6379.`,
    { detail: { reasons } },
  );
}

async function startRedis(bin: string, options: ResolveOptions): Promise<ResolvedStore> {
  const dir = mkdtempSync(join(options.tmpDir ?? tmpdir(), 'shoal-redis-'));
  const logFile = join(dir, 'redis.log');
  let child: ChildProcess | undefined;
  const cleanup = () => {
    if (child?.pid !== undefined) killSync(child.pid, 'SIGKILL', 0);
    rmSync(dir, { recursive: true, force: true });
  };
  const removeHooks = installExitHooks(cleanup);
  const deadline = options.startTimeoutMs ?? 30_000;
  try {
    for (let attempt = 1; ; attempt++) {
      const port = await freePort();
      const url = `redis://127.0.0.1:${port}`;
      options.log?.(`starting a private redis-server on 127.0.0.1:${port} in ${dir}`);
      const fd = openSync(logFile, 'a');
      // Own session: a Ctrl-C meant for the app must not kill the server before the app drains.
      const proc = spawn(
        bin,
        ['--port', String(port), '--bind', '127.0.0.1', '--save', '', '--appendonly', 'no', '--dir', dir],
        { detached: true, stdio: ['ignore', fd, fd], cwd: dir },
      );
      closeSync(fd);
      child = proc;
      proc.unref();
      const exited = new Promise<string>((resolve) => {
        proc.once('exit', (code, signal) => resolve(`redis-server exited (${signal ?? code})`));
        proc.once('error', (err) => resolve(`redis-server failed to start: ${err.message}`));
      });
      const started = Date.now();
      let failure: string | undefined;
      for (;;) {
        const outcome = await Promise.race([
          pingRedis(url, 500).then(
            () => 'ok',
            () => 'retry',
          ),
          exited,
        ]);
        if (outcome === 'ok') break;
        if (outcome !== 'retry') {
          failure = outcome;
          break;
        }
        if (Date.now() - started > deadline) {
          failure = `redis-server did not answer within ${deadline} ms`;
          break;
        }
        await new Promise((r) => setTimeout(r, 50));
      }
      if (failure === undefined) {
        const pid = proc.pid;
        let stopping: Promise<void> | undefined;
        return {
          url,
          source: 'started',
          dir,
          pid,
          stop: () => {
            stopping ??= (async () => {
              removeHooks();
              if (pid !== undefined && isAlive(pid)) {
                proc.kill('SIGTERM');
                if (!(await waitGone(pid, 5000))) proc.kill('SIGKILL');
                await waitGone(pid, 2000);
              }
              rmSync(dir, { recursive: true, force: true });
            })();
            return stopping;
          },
        };
      }
      if (proc.pid !== undefined) killSync(proc.pid, 'SIGKILL', 0);
      let log = '';
      try {
        log = readFileSync(logFile, 'utf8').slice(-2000);
      } catch {
        // no log written
      }
      if (attempt < 3 && /address already in use/i.test(log)) continue;
      throw new ShoalError(
        'resolve.redis_unavailable',
        `Could not start a private redis-server (${bin}): ${failure}.${log ? `\n${log.trim()}` : ''}\n` +
          'Set REDIS_URL to a running server instead.',
      );
    }
  } catch (err) {
    removeHooks();
    cleanup();
    throw err;
  }
}

// ---------------------------------------------------------------------------------------------
// PostgreSQL

/**
 * Find or start a PostgreSQL server. See the module comment for the order. The URL it returns
 * connects as `postgres` to database `postgres` (trust auth on 127.0.0.1 for a started server).
 *
 * @example
 * const db = await resolvePostgres({ allowPglite: true, log: console.log });
 * const pool = createPool(db.url);
 * // ...
 * await pool.end();
 * await db.stop();
 */
export async function resolvePostgres(options: ResolvePostgresOptions = {}): Promise<ResolvedStore> {
  const env = options.env ?? process.env;
  const timeoutMs = options.timeoutMs ?? 3000;
  const given = options.url ?? (env.DATABASE_URL?.trim() || undefined);
  if (given !== undefined) {
    const what = options.url !== undefined ? 'the PostgreSQL URL given' : 'DATABASE_URL';
    try {
      await pingPostgres(given, timeoutMs);
    } catch (err) {
      throw new ShoalError(
        'resolve.postgres_unavailable',
        `${what} (${redactUrl(given)}) is not reachable: ${errMessage(err)}. ` +
          'Start that server, correct the URL, or unset DATABASE_URL to let Shoal find or start a local one.',
        { cause: err },
      );
    }
    return found(given, 'env');
  }
  const reasons: string[] = ['DATABASE_URL is not set'];
  if (options.probeLocal ?? true) {
    const local = `postgres://postgres@127.0.0.1:${options.localPort ?? 5432}/postgres`;
    try {
      await pingPostgres(local, timeoutMs);
      return found(local, 'local');
    } catch (err) {
      reasons.push(`nothing usable answers at ${local} (${errMessage(err)})`);
    }
  }
  if (options.allowStart ?? true) {
    const dirs = options.binDirs ?? [...pathDirs(env), ...postgresInstallDirs()];
    const binDir = dirs.find((d) => isExecutable(join(d, 'initdb')) && isExecutable(join(d, 'pg_ctl')));
    if (binDir) {
      try {
        return await startPostgres(binDir, options);
      } catch (err) {
        if (!options.allowPglite) throw err;
        reasons.push(errMessage(err).split('\n')[0] ?? 'starting PostgreSQL failed');
      }
    } else {
      reasons.push(`initdb/pg_ctl are not installed (searched ${dirs.join(delimiter) || 'no directories'})`);
    }
  } else {
    reasons.push('starting a private server is disabled');
  }
  if (options.allowPglite) {
    try {
      return await startPglite(options);
    } catch (err) {
      reasons.push(`embedded PGlite is not available (${errMessage(err)})`);
    }
  }
  throw new ShoalError(
    'resolve.postgres_unavailable',
    `No PostgreSQL available: ${reasons.join('; ')}. Either ${PG_INSTALL}, ` +
      'or set DATABASE_URL=postgres://user:password@host:5432/db.',
    { detail: { reasons } },
  );
}

/** initdb and postgres refuse to run as root: run them as the `postgres` system user then. */
function postgresUser(): { uid: number; gid: number } | undefined {
  if (typeof process.getuid !== 'function' || process.getuid() !== 0) return undefined;
  const uid = spawnSync('id', ['-u', 'postgres'], { encoding: 'utf8' });
  const gid = spawnSync('id', ['-g', 'postgres'], { encoding: 'utf8' });
  if (uid.status !== 0 || gid.status !== 0) {
    throw new ShoalError(
      'resolve.postgres_unavailable',
      'Running as root, and PostgreSQL refuses to run as root, but there is no "postgres" user to run it as. ' +
        'Create one (useradd --system postgres), run as a normal user, or set DATABASE_URL.',
    );
  }
  return { uid: Number(uid.stdout.trim()), gid: Number(gid.stdout.trim()) };
}

function shellQuote(parts: string[]): string {
  return parts.map((p) => `'${p.replace(/'/g, `'\\''`)}'`).join(' ');
}

/** The command line that runs `bin args` as the postgres user when we are root. */
function asPostgres(asUser: boolean, bin: string, args: string[]): [string, string[]] {
  if (!asUser) return [bin, args];
  if (isExecutable('/usr/sbin/runuser') || isExecutable('/sbin/runuser')) {
    return ['runuser', ['-u', 'postgres', '--', bin, ...args]];
  }
  return ['su', ['postgres', '-s', '/bin/sh', '-c', shellQuote([bin, ...args])]];
}

async function startPostgres(binDir: string, options: ResolvePostgresOptions): Promise<ResolvedStore> {
  const user = postgresUser();
  const dir = mkdtempSync(join(options.tmpDir ?? tmpdir(), 'shoal-pg-'));
  if (/[\s'"\\]/.test(dir) || dir.length > 80) {
    rmSync(dir, { recursive: true, force: true });
    throw new ShoalError(
      'resolve.postgres_unavailable',
      `temp directory ${dir} is unsuitable for a PostgreSQL socket (no spaces/quotes, at most 80 characters); set tmpDir`,
    );
  }
  const data = join(dir, 'data');
  const logFile = join(dir, 'postgres.log');
  const initdb = join(binDir, 'initdb');
  const pgCtl = join(binDir, 'pg_ctl');
  let pid: number | undefined;
  const readPid = (): number | undefined => {
    try {
      const n = Number(readFileSync(join(data, 'postmaster.pid'), 'utf8').split('\n')[0]);
      return Number.isInteger(n) && n > 0 ? n : undefined;
    } catch {
      return undefined;
    }
  };
  const cleanup = () => {
    // Immediate shutdown (SIGQUIT): the data is throw-away, and this runs in an exit hook.
    const p = pid ?? readPid();
    if (p !== undefined) killSync(p, 'SIGQUIT', 5000);
    rmSync(dir, { recursive: true, force: true });
  };
  const removeHooks = installExitHooks(cleanup);
  const startTimeoutMs = options.startTimeoutMs ?? 60_000;
  try {
    if (user) chownSync(dir, user.uid, user.gid);
    const t0 = Date.now();
    options.log?.(`initialising a private PostgreSQL cluster in ${dir}`);
    const [initCmd, initArgs] = asPostgres(user !== undefined, initdb, [
      '-D',
      data,
      '-U',
      'postgres',
      '-A',
      'trust',
      '-E',
      'UTF8',
      '--no-locale',
      '--no-sync',
    ]);
    const init = await run(initCmd, initArgs, { cwd: dir, timeoutMs: startTimeoutMs });
    if (init.code !== 0) {
      throw new ShoalError(
        'resolve.postgres_unavailable',
        `Could not initialise a private PostgreSQL cluster (${initdb}, exit ${init.code}):\n${init.output.trim()}\n` +
          'Set DATABASE_URL to a running server instead.',
      );
    }
    for (let attempt = 1; ; attempt++) {
      const port = await freePort();
      options.log?.(`starting a private PostgreSQL on 127.0.0.1:${port}`);
      // Throw-away cluster: durability settings off for a fast start and fast tests.
      const serverOpts = [
        `-p ${port}`,
        '-c listen_addresses=127.0.0.1',
        `-k ${dir}`,
        '-c fsync=off',
        '-c synchronous_commit=off',
        '-c full_page_writes=off',
      ].join(' ');
      const [ctlCmd, ctlArgs] = asPostgres(user !== undefined, pgCtl, [
        'start',
        '-w',
        '-t',
        String(Math.ceil(startTimeoutMs / 1000)),
        '-D',
        data,
        '-l',
        logFile,
        '-o',
        serverOpts,
      ]);
      // Detached: the server lives in its own session, out of reach of a terminal's Ctrl-C.
      const started = await run(ctlCmd, ctlArgs, {
        cwd: dir,
        timeoutMs: startTimeoutMs + 5000,
        detached: true,
      });
      pid = readPid();
      if (started.code === 0 && pid !== undefined) {
        const url = `postgres://postgres@127.0.0.1:${port}/postgres`;
        await pingPostgres(url, 5000);
        options.log?.(`private PostgreSQL ready on 127.0.0.1:${port} after ${Date.now() - t0} ms`);
        const serverPid = pid;
        let stopping: Promise<void> | undefined;
        return {
          url,
          source: 'started',
          dir,
          pid: serverPid,
          stop: () => {
            stopping ??= (async () => {
              removeHooks();
              if (isAlive(serverPid)) {
                const [stopCmd, stopArgs] = asPostgres(user !== undefined, pgCtl, [
                  'stop',
                  '-D',
                  data,
                  '-m',
                  'fast',
                  '-w',
                  '-t',
                  '10',
                ]);
                await run(stopCmd, stopArgs, { cwd: dir, timeoutMs: 15_000 });
                if (!(await waitGone(serverPid, 3000))) killSync(serverPid, 'SIGQUIT', 3000);
              }
              rmSync(dir, { recursive: true, force: true });
            })();
            return stopping;
          },
        };
      }
      let log = '';
      try {
        log = readFileSync(logFile, 'utf8').slice(-2000);
      } catch {
        // no log written
      }
      if (pid !== undefined) killSync(pid, 'SIGQUIT', 5000);
      pid = undefined;
      if (attempt < 3 && /could not bind|address already in use/i.test(log)) continue;
      throw new ShoalError(
        'resolve.postgres_unavailable',
        `Could not start a private PostgreSQL (${pgCtl}, exit ${started.code}):\n${(log || started.output).trim()}\n` +
          'Set DATABASE_URL to a running server instead.',
      );
    }
  } catch (err) {
    removeHooks();
    cleanup();
    throw err;
  }
}

async function startPglite(options: ResolvePostgresOptions): Promise<ResolvedStore> {
  // Optional dependencies, loaded only on this path.
  const { PGlite } = await import('@electric-sql/pglite');
  const { PGLiteSocketServer } = await import('@electric-sql/pglite-socket');
  options.log?.('starting embedded PGlite (in memory) over the PostgreSQL wire protocol');
  const db = await PGlite.create();
  const server = new PGLiteSocketServer({
    db,
    host: '127.0.0.1',
    port: 0,
    maxConnections: options.pgliteMaxConnections ?? 100,
  });
  try {
    await server.start();
  } catch (err) {
    await db.close().catch(() => {});
    throw err;
  }
  const conn = server.getServerConn();
  const port = Number(conn.slice(conn.lastIndexOf(':') + 1));
  const url = `postgres://postgres@127.0.0.1:${port}/postgres`;
  options.log?.(`embedded PGlite ready on 127.0.0.1:${port}`);
  let stopping: Promise<void> | undefined;
  return {
    url,
    source: 'pglite',
    stop: () => {
      stopping ??= (async () => {
        await server.stop();
        await db.close();
      })();
      return stopping;
    },
  };
}
