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
  /** For the EVAL form, sent once if Redis does not know the script yet (NOSCRIPT); unset on it. */
  #sender: CommandSender | undefined;
  #script: LuaScript | undefined;
  #keys: readonly string[] = NO_ROUTING;
  #tail: readonly string[] = NO_ROUTING;
  #packedLength = 0;
  /** Set for calls sent by sendTemplate: told the outcome directly, with no promise reaction. */
  #handler: ReplyHandler | undefined;

  static create(
    sender: CommandSender,
    script: LuaScript,
    viaSha: boolean,
    keys: readonly string[],
    packed: Uint8Array,
    packedLength: number,
    tail: readonly string[],
    wire?: Buffer,
  ): PackedCommand {
    const name = viaSha ? 'evalsha' : 'eval';
    const body = viaSha ? script.sha : script.source;
    // `routing` (script, numkeys, keys) is what ioredis reads to find the keys' slot on a Cluster;
    // a single node never reads it. Null reply encoding keeps the reply a Buffer.
    const routing = sender.isCluster === true ? [body, String(keys.length), ...keys] : NO_ROUTING;
    const cmd = new PackedCommand(name, routing, BUFFER_REPLY);
    cmd.#wire = wire ?? encode(name, body, keys, packed, packedLength, tail);
    if (viaSha) {
      // No closure per call for a retry that almost never happens: the fields suffice.
      cmd.#sender = sender;
      cmd.#script = script;
      cmd.#keys = keys;
      cmd.#tail = tail;
      cmd.#packedLength = packedLength;
    }
    return cmd;
  }

  override toWritable(): Buffer {
    return this.#wire;
  }

  /**
   * The handler, which this command lets go of: it is told one outcome, once, and is a decision's
   * whole call. Measured at concurrency 1: while a settled command held on to it, 13-20 % of the
   * young generation survived each scavenge (4-6 ms pauses, the calls ending up in the old
   * generation) instead of none.
   */
  #takeHandler(): ReplyHandler | undefined {
    const handler = this.#handler;
    this.#handler = undefined;
    return handler;
  }

  /** The reply arrived: tell the handler, if any, and settle the promise (ioredis returns it). */
  delivered(value: unknown, resolve: (v: unknown) => void): void {
    this.#takeHandler()?.reply(value as Buffer);
    resolve(value);
  }

  /** The call failed: tell the handler, if any, and reject the promise. */
  failed(err: Error, reject: (e: unknown) => void): void {
    const handler = this.#takeHandler();
    if (handler) {
      // Nobody but ioredis holds this promise: its rejection is not an unhandled one.
      this.promise.catch(ignore);
      handler.error(err);
    }
    reject(err);
  }

  /** On NOSCRIPT, send the EVAL form once and settle with its outcome; true when it did. */
  retryWithSource(err: Error, resolve: (v: unknown) => void, reject: (e: unknown) => void): boolean {
    const sender = this.#sender;
    this.#sender = undefined;
    if (!sender || !this.#script || !isNoScript(err)) return false;
    // The packed argument is read back from this call's own bytes: the caller may have reused
    // its buffer since. It sits just before the text arguments and their CRLF.
    let after = 2;
    for (const t of this.#tail) after += bulkSize(Buffer.byteLength(t));
    const end = this.#wire.length - after;
    const packed = this.#wire.subarray(end - this.#packedLength, end);
    const cmd = PackedCommand.create(
      sender,
      this.#script,
      false,
      this.#keys,
      packed,
      packed.length,
      this.#tail,
    );
    const handler = this.#takeHandler();
    if (handler) {
      cmd.#handler = handler;
      this.promise.catch(ignore);
    }
    sender.sendCommand(cmd);
    cmd.promise.then(resolve, reject);
    return true;
  }

  /** A call from a template: its keys are the only bytes encoded here. */
  static fromTemplate(sender: CommandSender, t: PackedTemplate, keys: readonly string[]): PackedCommand {
    if (keys.length !== t.keyCount) {
      throw new Error(`evalTemplate: ${keys.length} keys, template has ${t.keyCount}`);
    }
    const prefix = sender.options?.keyPrefix;
    const wireKeys = prefix ? keys.map((k) => prefix + k) : keys;
    const { head, rest } = t;
    // Sized as if every key were ASCII, as keys are in practice, and written in the same pass that
    // checks it; a key that is not sends the call through the general encoder instead.
    let size = head.length + rest.length;
    for (let i = 0; i < wireKeys.length; i++) size += bulkSize(wireKeys[i]!.length);
    let out: Buffer | undefined = Buffer.allocUnsafe(size);
    out.set(head, 0);
    let at = head.length;
    ascii: for (let i = 0; i < wireKeys.length; i++) {
      const k = wireKeys[i]!;
      const len = k.length;
      at = putBulkHead(out, at, len);
      for (let j = 0; j < len; j++) {
        const c = k.charCodeAt(j);
        if (c > 0x7f) {
          out = undefined;
          break ascii;
        }
        out[at + j] = c;
      }
      at += len;
      out[at] = 13;
      out[at + 1] = 10;
      at += 2;
    }
    if (out) out.set(rest, at);
    else out = encode('evalsha', t.script.sha, wireKeys, t.packed, t.packed.length, t.tail);
    return PackedCommand.create(sender, t.script, true, wireKeys, t.packed, t.packed.length, t.tail, out);
  }

  /** {@link sendTemplate}'s command: the handler learns the outcome. */
  static withHandler(cmd: PackedCommand, handler: ReplyHandler): PackedCommand {
    cmd.#handler = handler;
    return cmd;
  }
}

const BUFFER_REPLY = { replyEncoding: null };
const ignore = () => {};

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
        this.delivered(value, resolve);
      };
      self.reject = (err: Error) => {
        self._clearTimers();
        if (!this.retryWithSource(err, resolve, reject)) this.failed(err, reject);
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
  // comparisons, not repeated division: called for every argument of every call
  if (n < 10) return 1;
  if (n < 100) return 2;
  if (n < 1000) return 3;
  if (n < 10000) return 4;
  let d = 5;
  for (let m = n / 100000; m >= 1; m /= 10) d++;
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
  packedLength: number,
  tail: readonly string[],
): Buffer {
  const argc = 3 + keys.length + 1 + tail.length;
  const count = String(keys.length);
  const nameLen = Buffer.byteLength(name);
  const bodyLen = Buffer.byteLength(body);
  const keyLens: number[] = new Array(keys.length);
  const tailLens: number[] = new Array(tail.length);
  let size = 3 + digitCount(argc);
  size += bulkSize(nameLen) + bulkSize(bodyLen) + bulkSize(count.length) + bulkSize(packedLength);
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
  at = putBulkHead(out, at, packedLength);
  out.set(packedLength === packed.length ? packed : packed.subarray(0, packedLength), at);
  at += packedLength;
  out[at] = 13;
  out[at + 1] = 10;
  at += 2;
  for (let i = 0; i < tail.length; i++) at = putBulk(out, at, tail[i]!, tailLens[i]!);
  if (at !== size) throw new Error(`evalPacked: encoded ${at} bytes, expected ${size}`);
  return out;
}

/**
 * The bytes of an `EVALSHA` call that do not depend on its keys, for calls that repeat the same
 * packed argument and text arguments with other keys (a lone rate-limit decision against the same
 * limits, say): made once by {@link packedTemplate}, sent by {@link evalTemplate}, which then only
 * writes the keys between them.
 */
export interface PackedTemplate {
  readonly script: LuaScript;
  readonly keyCount: number;
  /** `*<argc>`, `EVALSHA`, the hash and the key count, as RESP */
  readonly head: Buffer;
  /** the packed argument and the text arguments, as RESP bulk strings */
  readonly rest: Buffer;
  /** an own copy of the packed argument, for the EVAL form sent on NOSCRIPT */
  readonly packed: Uint8Array;
  readonly tail: readonly string[];
}

/**
 * Encode once what every call of `script` with `keyCount` keys, this packed argument (its first
 * `packedLength` bytes, copied) and these text arguments sends around its keys.
 *
 * @example
 * const t = packedTemplate(checkScript, 1, packedRequest, packedRequest.length, ['66000']);
 * const reply = await evalTemplate(redis, t, ['rl:{rl}ip:1.2.3.4']);
 */
export function packedTemplate(
  script: LuaScript,
  keyCount: number,
  packed: Uint8Array,
  packedLength: number,
  tail: readonly string[],
): PackedTemplate {
  // The whole call encoded with placeholder keys of one byte, then cut around them.
  const placeholders: string[] = new Array(keyCount).fill('k');
  const whole = encode('evalsha', script.sha, placeholders, packed, packedLength, tail);
  const keysBytes = keyCount * bulkSize(1);
  const headEnd =
    3 +
    digitCount(3 + keyCount + 1 + tail.length) +
    bulkSize(7) +
    bulkSize(Buffer.byteLength(script.sha)) +
    bulkSize(String(keyCount).length);
  return {
    script,
    keyCount,
    head: Buffer.from(whole.subarray(0, headEnd)),
    rest: Buffer.from(whole.subarray(headEnd + keysBytes)),
    packed: Uint8Array.prototype.slice.call(packed, 0, packedLength),
    tail,
  };
}

/**
 * {@link evalPacked} for a call made from a {@link PackedTemplate}: the same reply, retries and
 * routing, with only the keys encoded per call.
 *
 * @example
 * const reply = await evalTemplate(redis, t, ['rl:{rl}ip:1.2.3.4']);
 */
export function evalTemplate(
  client: RedisClient,
  t: PackedTemplate,
  keys: readonly string[],
): Promise<Buffer> {
  const sender = client as unknown as CommandSender;
  const cmd = PackedCommand.fromTemplate(sender, t, keys);
  sender.sendCommand(cmd);
  return cmd.promise as Promise<Buffer>;
}

/** Told the outcome of a call sent with {@link sendTemplate}: one of the two, once. */
export interface ReplyHandler {
  reply(value: Buffer): void;
  error(err: Error): void;
}

/**
 * {@link evalTemplate} for a caller that takes the outcome as a method call on `handler` rather
 * than from a promise: the reply reaches it in the same turn it arrives, with no promise reaction
 * (one less microtask and its allocations per call, which a decision at concurrency 1 feels).
 * A template or key count that does not match throws here.
 *
 * @example
 * sendTemplate(redis, t, ['rl:{rl}ip:1.2.3.4'], { reply: (b) => use(b), error: (e) => fallBack(e) });
 */
export function sendTemplate(
  client: RedisClient,
  t: PackedTemplate,
  keys: readonly string[],
  handler: ReplyHandler,
): void {
  const sender = client as unknown as CommandSender;
  sender.sendCommand(PackedCommand.withHandler(PackedCommand.fromTemplate(sender, t, keys), handler));
}

/**
 * Run `script` by SHA with one binary argument between the keys and some text arguments, and
 * resolve with the raw reply bytes. On NOSCRIPT the source is sent once with EVAL (which caches it
 * server-side). A client `keyPrefix` is applied to the keys, as ioredis would. Only the first
 * `packedLength` bytes of `packed` are sent, copied before this returns, so a caller may reuse one
 * buffer for every call.
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
  packedLength = packed.length,
): Promise<Buffer> {
  const sender = client as unknown as CommandSender;
  const prefix = sender.options?.keyPrefix;
  const wireKeys = prefix ? keys.map((k) => prefix + k) : keys;
  const cmd = PackedCommand.create(sender, script, true, wireKeys, packed, packedLength, tail);
  sender.sendCommand(cmd);
  return cmd.promise as Promise<Buffer>;
}
