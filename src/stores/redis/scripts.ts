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

function isNoScript(err: unknown): boolean {
  return err instanceof Error && err.message.startsWith('NOSCRIPT');
}

/**
 * Run a script by SHA in one round trip; on NOSCRIPT (first call on a node, or after
 * `SCRIPT FLUSH`/a restart) fall back to EVAL, which also caches it server-side.
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
    if (!isNoScript(err)) throw err;
    try {
      return (await client.eval(script.source, keys.length, ...keys, ...args)) as T;
    } catch (inner) {
      throw new ShoalError(
        'store.script_failed',
        `Lua script ${script.name} failed: ${(inner as Error).message}`,
        {
          cause: inner,
        },
      );
    }
  }
}
