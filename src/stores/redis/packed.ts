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
}

class PackedCommand extends Command {
  readonly #wire: Buffer;

  constructor(name: string, routing: string[], wire: Buffer) {
    // `routing` (script, numkeys, keys) is what ioredis reads to find the keys' slot on a Cluster;
    // null reply encoding keeps the reply a Buffer
    super(name, routing, { replyEncoding: null });
    this.#wire = wire;
  }

  override toWritable(): Buffer {
    return this.#wire;
  }
}

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
  const send = (name: string, body: string) => {
    const cmd = new PackedCommand(
      name,
      [body, String(wireKeys.length), ...wireKeys],
      encode(name, body, wireKeys, packed, tail),
    );
    sender.sendCommand(cmd);
    return cmd.promise as Promise<Buffer>;
  };
  return send('evalsha', script.sha).catch((err: unknown) => {
    if (!isNoScript(err)) throw err;
    return send('eval', script.source);
  });
}
