/**
 * One script call whose wire bytes the caller builds, for hot paths that send a binary argument.
 *
 * ioredis encodes a command that carries a Buffer argument piece by piece (a length lookup and a
 * copy per argument) and wraps each call in its own Command; measured on a rate-limit decision
 * that cost several microseconds per call, more than the Lua it runs. Here the whole request is
 * one Buffer written in three copies, and it still travels through the client's own queue, so
 * reconnects, the offline queue, Cluster slot routing and MOVED/ASK retries behave as for any
 * other command.
 */
import { Command } from 'ioredis';
import type { RedisClient } from './client.js';
import { isNoScript, type LuaScript } from './scripts.js';

/** Anything that can send an ioredis Command (a single node, Sentinel-backed, or a Cluster). */
interface CommandSender {
  sendCommand(command: Command): unknown;
  options?: { keyPrefix?: string };
  isCluster?: boolean;
}

// The parts of ioredis's Command this file replaces or calls (declared by ioredis as JS only).
interface CommandInternals {
  resolve(value: unknown): unknown;
  reject(err: Error): unknown;
  isResolved: boolean;
  _clearTimers(): void;
}

class PackedCommand extends Command {
  #wire: Buffer = EMPTY;
  /** The EVAL form, sent once if Redis does not know the script yet (NOSCRIPT). */
  #fallback: (() => PackedCommand) | undefined;

  static create(
    name: string,
    routing: string[],
    wire: Buffer,
    fallback: (() => PackedCommand) | undefined,
  ): PackedCommand {
    // `routing` (script, numkeys, keys) is what ioredis reads to find the keys' slot on a Cluster;
    // a single node never reads it. Null reply encoding keeps the reply a Buffer.
    const cmd = new PackedCommand(name, routing, { replyEncoding: null });
    cmd.#wire = wire;
    cmd.#fallback = fallback;
    return cmd;
  }

  override toWritable(): Buffer {
    return this.#wire;
  }

  /** On NOSCRIPT, send the EVAL form once and settle with its outcome; true when it did. */
  retryWithSource(err: Error, resolve: (v: unknown) => void, reject: (e: unknown) => void): boolean {
    const fallback = this.#fallback;
    this.#fallback = undefined;
    if (!fallback || !isNoScript(err)) return false;
    fallback().promise.then(resolve, reject);
    return true;
  }
}

// ioredis's constructor calls initPromise (private in its typings, hence set here rather than
// overridden in the class). The stock version wraps each command in three closures, a reply
// transformer and a callback adapter; a decision on the hot path needs none of them. Timers are
// still cleared, so a client-wide `commandTimeout` behaves as for any command.
Object.defineProperty(PackedCommand.prototype, 'initPromise', {
  configurable: true,
  writable: true,
  value: function initPromise(this: PackedCommand): void {
    const self = this as unknown as CommandInternals;
    this.promise = new Promise((resolve, reject) => {
      self.resolve = (value: unknown) => {
        self._clearTimers();
        self.isResolved = true;
        resolve(value);
      };
      self.reject = (err: Error) => {
        self._clearTimers();
        if (!this.retryWithSource(err, resolve, reject)) reject(err);
      };
    });
  },
});

const EMPTY = Buffer.alloc(0);
const NO_ROUTING: string[] = [];

function bulk(s: string): string {
  return `$${Buffer.byteLength(s)}\r\n${s}\r\n`;
}

/**
 * Build the RESP bytes of `EVALSHA|EVAL <body> <numkeys> <keys...> <packed> <tail...>`.
 * Keys and tail are text; `packed` is copied as is.
 */
function encode(
  name: string,
  body: string,
  keys: readonly string[],
  packed: Uint8Array,
  tail: readonly string[],
): Buffer {
  let head = `*${3 + keys.length + 1 + tail.length}\r\n${bulk(name)}${bulk(body)}${bulk(String(keys.length))}`;
  for (const k of keys) head += bulk(k);
  head += `$${packed.length}\r\n`;
  let end = '\r\n';
  for (const s of tail) end += bulk(s);
  const headLen = Buffer.byteLength(head);
  const out = Buffer.allocUnsafe(headLen + packed.length + Buffer.byteLength(end));
  out.write(head, 0);
  out.set(packed, headLen);
  out.write(end, headLen + packed.length);
  return out;
}

/**
 * Run `script` by SHA with one binary argument between the keys and some text arguments, and
 * resolve with the raw reply bytes. On NOSCRIPT the source is sent once with EVAL (which caches it
 * server-side). A client `keyPrefix` is applied to the keys, as ioredis would.
 *
 * @example
 * const reply = await evalPacked(redis, checkScript, ['rl:{rl}ip:1.2.3.4'], packedRequest, ['66000']);
 */
export function evalPacked(
  client: RedisClient,
  script: LuaScript,
  keys: readonly string[],
  packed: Uint8Array,
  tail: readonly string[],
): Promise<Buffer> {
  const sender = client as unknown as CommandSender;
  const prefix = sender.options?.keyPrefix;
  const wireKeys = prefix ? keys.map((k) => prefix + k) : keys;
  const command = (name: string, body: string, fallback: (() => PackedCommand) | undefined) =>
    PackedCommand.create(
      name,
      sender.isCluster === true ? [body, String(wireKeys.length), ...wireKeys] : NO_ROUTING,
      encode(name, body, wireKeys, packed, tail),
      fallback,
    );
  const viaSource = () => {
    const cmd = command('eval', script.source, undefined);
    sender.sendCommand(cmd);
    return cmd;
  };
  const cmd = command('evalsha', script.sha, viaSource);
  sender.sendCommand(cmd);
  return cmd.promise as Promise<Buffer>;
}
