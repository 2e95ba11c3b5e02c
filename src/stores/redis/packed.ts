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

/** Write the decimal digits of a non-negative integer at `at`; returns the offset after them. */
function putInt(out: Buffer, at: number, n: number): number {
  const end = at + digitCount(n);
  for (let i = end - 1; i >= at; i--) {
    out[i] = 48 + (n % 10);
    n = Math.floor(n / 10);
  }
  return end;
}

function digitCount(n: number): number {
  let d = 1;
  while (n >= 10) {
    n = Math.floor(n / 10);
    d++;
  }
  return d;
}

/** Write `$<len>\r\n`; returns the offset after it. */
function putBulkHead(out: Buffer, at: number, len: number): number {
  out[at] = 36;
  at = putInt(out, at + 1, len);
  out[at] = 13;
  out[at + 1] = 10;
  return at + 2;
}

/** Write one bulk string of `len` UTF-8 bytes; returns the offset after it. */
function putBulk(out: Buffer, at: number, s: string, len: number): number {
  at = putBulkHead(out, at, len);
  if (len === s.length && len <= 64) {
    // Pure ASCII (byte length equals length) and short, as keys and script hashes are: copied
    // here, which is cheaper than a call into the native encoder per string.
    for (let i = 0; i < len; i++) out[at + i] = s.charCodeAt(i);
  } else {
    out.write(s, at, 'utf8');
  }
  at += len;
  out[at] = 13;
  out[at + 1] = 10;
  return at + 2;
}

/** Bytes of `$<len>\r\n...\r\n` around a string of `len` bytes. */
function bulkSize(len: number): number {
  return len + 5 + digitCount(len);
}

/**
 * Build the RESP bytes of `EVALSHA|EVAL <body> <numkeys> <keys...> <packed> <tail...>`.
 * Keys and tail are text; `packed` is copied as is. Written straight into one buffer sized
 * first, with no intermediate strings.
 */
function encode(
  name: string,
  body: string,
  keys: readonly string[],
  packed: Uint8Array,
  tail: readonly string[],
): Buffer {
  const argc = 3 + keys.length + 1 + tail.length;
  const count = String(keys.length);
  const nameLen = Buffer.byteLength(name);
  const bodyLen = Buffer.byteLength(body);
  const keyLens: number[] = new Array(keys.length);
  const tailLens: number[] = new Array(tail.length);
  let size = 3 + digitCount(argc);
  size += bulkSize(nameLen) + bulkSize(bodyLen) + bulkSize(count.length) + bulkSize(packed.length);
  for (let i = 0; i < keys.length; i++) {
    const len = Buffer.byteLength(keys[i]!);
    keyLens[i] = len;
    size += bulkSize(len);
  }
  for (let i = 0; i < tail.length; i++) {
    const len = Buffer.byteLength(tail[i]!);
    tailLens[i] = len;
    size += bulkSize(len);
  }
  const out = Buffer.allocUnsafe(size);
  out[0] = 42;
  let at = putInt(out, 1, argc);
  out[at] = 13;
  out[at + 1] = 10;
  at = putBulk(out, at + 2, name, nameLen);
  at = putBulk(out, at, body, bodyLen);
  at = putBulk(out, at, count, count.length);
  for (let i = 0; i < keys.length; i++) at = putBulk(out, at, keys[i]!, keyLens[i]!);
  at = putBulkHead(out, at, packed.length);
  out.set(packed, at);
  at += packed.length;
  out[at] = 13;
  out[at + 1] = 10;
  at += 2;
  for (let i = 0; i < tail.length; i++) at = putBulk(out, at, tail[i]!, tailLens[i]!);
  if (at !== size) throw new Error(`evalPacked: encoded ${at} bytes, expected ${size}`);
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
