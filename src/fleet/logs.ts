/**
 * Merged replica logs: every line of every replica's stdout/stderr, prefixed with the replica's
 * name in a stable colour (no colour when the output is not a terminal), plus the fleet's own
 * messages under the `shoal` prefix.
 */
import type { Readable, Writable } from 'node:stream';
import { lineSplitter } from '../util/lines.js';

const COLORS = [36, 33, 32, 35, 34, 96, 93, 92, 95, 94];
const FLEET_KEY = '\0shoal';

/** Where merged logs go. */
export interface LogSink {
  /** Pipe a replica's stream into the merged output, one prefixed line at a time. */
  attach(prefix: string, stream: Readable, colorKey?: string): void;
  /** A fleet message (`shoal | ...`). */
  fleet(message: string): void;
  /** Write raw text (tables, banners) without a prefix. */
  raw(text: string): void;
}

/** Options for {@link createLogSink}. */
export interface LogSinkOptions {
  out?: Writable & { isTTY?: boolean };
  /** Force colour on/off; default: on when `out` is a TTY and NO_COLOR is unset. */
  color?: boolean;
}

/**
 * Create a merged log writer.
 *
 * @example
 * const logs = createLogSink({ out: process.stdout });
 * logs.attach('api-0', child.stdout);
 * logs.fleet('api-0 exited with code 1; restarting in 250ms');
 */
export function createLogSink(options: LogSinkOptions = {}): LogSink {
  const out = options.out ?? process.stdout;
  const color = options.color ?? (Boolean(out.isTTY) && !process.env.NO_COLOR);
  const colorOf = new Map<string, number>();
  let width = 5;

  const paint = (key: string, text: string): string => {
    if (!color) return text;
    let c = key === FLEET_KEY ? 1 : colorOf.get(key);
    if (c === undefined) {
      c = COLORS[colorOf.size % COLORS.length]!;
      colorOf.set(key, c);
    }
    return `\x1b[${c}m${text}\x1b[0m`;
  };
  const line = (prefix: string, key: string, text: string): void => {
    width = Math.max(width, prefix.length);
    out.write(`${paint(key, prefix.padEnd(width))} | ${text}\n`);
  };

  return {
    attach(prefix, stream, colorKey = prefix) {
      const split = lineSplitter((text) => line(prefix, colorKey, text.replace(/\r$/, '')), 64 * 1024);
      stream.setEncoding('utf8');
      stream.on('data', (chunk: string) => split.push(chunk));
      stream.on('end', () => split.end());
      stream.on('error', () => {});
    },
    fleet(message) {
      for (const l of message.split('\n')) line('shoal', FLEET_KEY, l);
    },
    raw(text) {
      out.write(text.endsWith('\n') ? text : text + '\n');
    },
  };
}
