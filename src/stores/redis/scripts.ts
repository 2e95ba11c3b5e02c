/**
 * Lua scripts: read once when the owning object is built, called by SHA, reloaded on NOSCRIPT.
 *
 * Script files live beside the capability that owns them, named `<name>-<numKeys>.lua`
 * (`n` when the key count varies), with a header comment listing KEYS, ARGV and the return value.
 */
import { createHash } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { ShoalError } from '../../errors.js';
import type { RedisClient } from './client.js';

/** A loaded script: its source and SHA1. Immutable; safe to share between clients. */
export interface LuaScript {
  readonly name: string;
  readonly source: string;
  readonly sha: string;
}

/**
 * Build a script from source text.
 *
 * @example
 * const incr = luaScript('incr-1', "return redis.call('INCR', KEYS[1])");
 */
export function luaScript(name: string, source: string): LuaScript {
  return { name, source, sha: createHash('sha1').update(source).digest('hex') };
}

/**
 * Read a `.lua` file relative to a module (pass `import.meta.url`).
 *
 * @example
 * const script = loadLuaFile(import.meta.url, './scripts/ratelimit-n.lua');
 */
export function loadLuaFile(base: string | URL, relativePath: string): LuaScript {
  const url = new URL(relativePath, base);
  const source = readFileSync(url, 'utf8');
  const name = url.pathname
    .split('/')
    .pop()!
    .replace(/\.lua$/, '');
  return luaScript(name, source);
}

/** Is this the server saying it has no script cached under that SHA? */
export function isNoScript(err: unknown): boolean {
  return err instanceof Error && err.message.startsWith('NOSCRIPT');
}

/**
 * Did the script itself fail (a Lua error, or a command inside it that Redis rejected)? Replies
 * about the server's state (BUSY, LOADING, READONLY, ...) and connection errors are not script
 * failures: callers treat those as "Redis unavailable".
 */
function isScriptError(err: unknown): boolean {
  if (!(err instanceof Error) || err.name !== 'ReplyError') return false;
  return !/^(NOSCRIPT|BUSY|LOADING|READONLY|MASTERDOWN|CLUSTERDOWN|TRYAGAIN|MOVED|ASK|NOAUTH|WRONGPASS|NOPERM)\b/.test(
    err.message,
  );
}

/**
 * Turn an error the script itself raised into `store.script_failed` (a bug, with a stable code);
 * connection errors and replies about the server's state are returned unchanged.
 *
 * @example
 * try { await redis.evalsha(script.sha, 0); } catch (err) { throw scriptFailed(script, err); }
 */
export function scriptFailed(script: LuaScript, err: unknown): unknown {
  if (!isScriptError(err)) return err;
  return new ShoalError(
    'store.script_failed',
    `Lua script ${script.name} failed: ${(err as Error).message}`,
    {
      cause: err,
      detail: { script: script.name, sha: script.sha },
    },
  );
}

/**
 * Run a script by SHA in one round trip; on NOSCRIPT (first call on a node, or after
 * `SCRIPT FLUSH`/a restart) send the source once with EVAL, which also caches it server-side.
 * An error raised by the script becomes `store.script_failed`; connection errors and replies
 * about the server's state pass through unchanged.
 *
 * @example
 * const n = await runScript(redis, incr, ['{user:1}:count'], []);
 */
export async function runScript<T = unknown>(
  client: RedisClient,
  script: LuaScript,
  keys: readonly (string | Buffer)[],
  args: readonly (string | number | Buffer)[],
): Promise<T> {
  try {
    return (await client.evalsha(script.sha, keys.length, ...keys, ...args)) as T;
  } catch (err) {
    if (!isNoScript(err)) throw scriptFailed(script, err);
  }
  try {
    return (await client.eval(script.source, keys.length, ...keys, ...args)) as T;
  } catch (err) {
    throw scriptFailed(script, err);
  }
}
