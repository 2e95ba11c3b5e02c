/**
 * Structured JSON logs with pino, redaction on by default.
 *
 * Redaction works on the finished line rather than on paths: pino's `redact` option needs every
 * path spelled out, but a secret can sit at any depth under any key that merely *contains*
 * "token" or "password". Each line is screened with one case-insensitive regular expression; only
 * a line that mentions a sensitive word is parsed, scrubbed and re-serialised. The request line
 * (a handful of short fields) therefore costs one regex test, and big objects are walked only
 * when they can hold something to hide.
 */
import { closeSync, openSync, writeSync } from 'node:fs';
import { type DestinationStream, type Logger, type LoggerOptions as PinoOptions, pino } from 'pino';

export type { Logger } from 'pino';

/** Options for {@link createLogger}. */
export interface LoggerOptions {
  /** Service name, logged as `service` on every line. */
  service: string;
  /** This replica's id, logged as `instance_id` on every line. */
  instanceId: string;
  /** Minimum level (`fatal`..`trace`, or `silent`); default `info`. */
  level?: string;
  /** Extra key names to censor (exact match, any case, any depth), on top of the defaults. */
  redact?: string[];
  /** Where lines go; default stdout (synchronous, so a crash or forced exit loses nothing). */
  destination?: NodeJS.WritableStream | DestinationStream;
  /** Text that replaces a censored value; default `[Redacted]`. */
  censor?: string;
}

/** Key names censored when they appear anywhere in a key, any case. */
export const REDACT_KEY_SUBSTRINGS: readonly string[] = [
  'password',
  'passwd',
  'secret',
  'token',
  'apikey',
  'api_key',
  'api-key',
  'credential',
  'private_key',
  'privatekey',
];

/** Key names censored on an exact (case-insensitive) match: the credential-carrying headers. */
export const REDACT_KEY_NAMES: readonly string[] = [
  'authorization',
  'proxy-authorization',
  'cookie',
  'set-cookie',
  'x-api-key',
];

// String values that are credentials whatever their key, e.g. a raw header list
// ['authorization', 'Bearer ...'].
const CREDENTIAL_VALUE = /^\s*(?:bearer|basic|digest)\s+\S/i;

// Past pino's own depth limit nothing is printed, so the scrubber need not go further either;
// anything deeper is dropped rather than risked.
const MAX_DEPTH = 12;

function escapeRegExp(s: string): string {
  return s.replace(/[.*+?^${}()|[\]\\]/g, '\\$&');
}

/** Options for {@link createRedactor}. */
export interface RedactorOptions {
  /** Extra key names censored on an exact, case-insensitive match. */
  names?: string[];
  censor?: string;
}

/**
 * Build the function that scrubs one serialised log line (NDJSON, newline included).
 * Lines that cannot contain a secret are returned untouched, without parsing.
 *
 * @example
 * const scrub = createRedactor({ names: ['card_number'] });
 * scrub('{"password":"x"}\n'); // '{"password":"[Redacted]"}\n'
 */
export function createRedactor(options: RedactorOptions = {}): (line: string) => string {
  const censor = options.censor ?? '[Redacted]';
  const exact = new Set([...REDACT_KEY_NAMES, ...(options.names ?? [])].map((n) => n.toLowerCase()));
  const contains = new RegExp(REDACT_KEY_SUBSTRINGS.map(escapeRegExp).join('|'), 'i');
  // Superset screen: every word that could make a key or value sensitive.
  const screen = new RegExp(
    [...REDACT_KEY_SUBSTRINGS, ...exact, 'bearer', 'basic', 'digest'].map(escapeRegExp).join('|'),
    'i',
  );
  const sensitiveKey = (key: string) => contains.test(key) || exact.has(key.toLowerCase());

  // Mutates `node` (a fresh JSON.parse result, so nobody else holds it); reports whether it changed.
  const scrub = (node: unknown, depth: number): boolean => {
    if (node === null || typeof node !== 'object') return false;
    let changed = false;
    if (Array.isArray(node)) {
      for (let i = 0; i < node.length; i++) {
        const v: unknown = node[i];
        if (typeof v === 'string') {
          // A flat name/value list such as Node's rawHeaders: ['Cookie', 'session=...'].
          const prev: unknown = i > 0 ? node[i - 1] : undefined;
          if (typeof prev === 'string' && prev.length <= 64 && sensitiveKey(prev)) {
            if (v !== censor) {
              node[i] = censor;
              changed = true;
            }
          } else if (CREDENTIAL_VALUE.test(v)) {
            node[i] = censor;
            changed = true;
          }
        } else if (v !== null && typeof v === 'object') {
          if (depth >= MAX_DEPTH) {
            node[i] = '[Truncated]';
            changed = true;
          } else if (scrub(v, depth + 1)) changed = true;
        }
      }
      return changed;
    }
    const rec = node as Record<string, unknown>;
    for (const key of Object.keys(rec)) {
      const v = rec[key];
      if (sensitiveKey(key)) {
        if (v !== censor) {
          rec[key] = censor;
          changed = true;
        }
      } else if (typeof v === 'string') {
        if (CREDENTIAL_VALUE.test(v)) {
          rec[key] = censor;
          changed = true;
        }
      } else if (v !== null && typeof v === 'object') {
        if (depth >= MAX_DEPTH) {
          rec[key] = '[Truncated]';
          changed = true;
        } else if (scrub(v, depth + 1)) changed = true;
      }
    }
    return changed;
  };

  return (line: string): string => {
    if (!screen.test(line)) return line;
    let parsed: unknown;
    try {
      parsed = JSON.parse(line);
    } catch {
      // Not JSON (a custom formatter?): better an unreadable line than a leaked secret.
      return `${JSON.stringify({ msg: 'log line withheld: could not be checked for secrets' })}\n`;
    }
    if (!scrub(parsed, 0)) return line;
    return `${JSON.stringify(parsed)}\n`;
  };
}

// Set on loggers made by createLogger: writes one finished NDJSON line to the logger's stream,
// through the same redaction screen pino's own lines pass unless the caller vouches for it.
const RAW_LINE = Symbol('shoal.log.rawLine');
type RawLineSink = (line: string, screened?: boolean) => void;
const SCRUB = Symbol('shoal.log.scrub');

/**
 * Create the service's root logger: JSON lines with `service` and `instance_id` on every line,
 * epoch-millisecond `time`, level names, and redaction of credentials that cannot be switched off.
 *
 * @example
 * const log = createLogger({ service: 'orders', instanceId: process.env.SHOAL_INSTANCE_ID ?? 'local' });
 * log.info({ user: { name: 'a', apiToken: 'x' } }, 'signed in'); // apiToken is logged as "[Redacted]"
 */
export function createLogger(opts: LoggerOptions): Logger {
  const scrub = createRedactor({ names: opts.redact, censor: opts.censor });
  const options: PinoOptions = {
    level: opts.level ?? 'info',
    base: { service: opts.service, instance_id: opts.instanceId },
    // Epoch milliseconds (pino's default): formatting an ISO date costs more than the rest of the
    // request line; log shippers and `pino-pretty` convert it.
    timestamp: pino.stdTimeFunctions.epochTime,
    formatters: { level: (label) => ({ level: label }) },
    hooks: { streamWrite: scrub },
  };
  const logger = opts.destination ? pino(options, opts.destination as DestinationStream) : pino(options);
  const stream = (logger as unknown as Record<symbol, { write(s: string): unknown }>)[pino.symbols.streamSym];
  if (stream && typeof stream.write === 'function') {
    const sink: RawLineSink = (line, screened) => {
      stream.write(screened === true ? line : scrub(line));
    };
    Object.defineProperty(logger, RAW_LINE, { value: sink });
    Object.defineProperty(logger, SCRUB, { value: scrub });
  }
  return logger;
}

/**
 * For the request middleware: a writer of lines shaped exactly as `logger[level](fields, msg)`
 * would write them, minus pino's generic serialisation. `fieldsJson` is the already-serialised
 * object body starting with a comma (`,"status":200`). Undefined for loggers not made by
 * {@link createLogger} (their format is unknown; call the logger instead).
 *
 * The caller vouches for `fieldsJson`: its keys are fixed non-sensitive names and its values
 * cannot be credentials, so the line skips the redaction screen (only the logger's bindings are
 * screened, once per distinct set). Anything user-supplied belongs in an ordinary log call.
 *
 * @example
 * const write = requestLineWriter(logger);
 * write?.('info', ',"status":200', 'request');
 */
export function requestLineWriter(
  logger: Logger,
): ((level: 'info' | 'error', fieldsJson: string, msg: string) => void) | undefined {
  const sink = (logger as unknown as Record<symbol, RawLineSink | undefined>)[RAW_LINE];
  if (!sink) return undefined;
  const chindingsSym = pino.symbols.chindingsSym;
  const scrub = (logger as unknown as Record<symbol, ((line: string) => string) | undefined>)[SCRUB];
  // The caller's fields are fixed keys with safe values (see above); only the logger's bindings
  // can hold a sensitive key. They are checked once per distinct bindings string.
  let checkedBindings: string | undefined;
  let bindingsClean = false;
  let lastMsg = '';
  let lastMsgJson = '""';
  // Lines in the same millisecond share the text of their time: a busy server writes dozens per
  // millisecond, and formatting a 13-digit number costs more than comparing it.
  let lastTime = -1;
  let lastTimeText = '';
  return (level, fieldsJson, msg) => {
    // Checked per line: the level can change at runtime. createLogger's loggers keep pino's
    // default order (a higher value is more severe), so one comparison does.
    if (logger.levelVal > (level === 'error' ? 50 : 30)) return;
    const time = Date.now();
    if (time !== lastTime) {
      lastTime = time;
      lastTimeText = String(time);
    }
    // The logger's bindings (service, instance_id, and any child bindings) as pino serialised them.
    const bindings = (logger as unknown as Record<symbol, string>)[chindingsSym] ?? '';
    if (bindings !== checkedBindings) {
      checkedBindings = bindings;
      const probe = `{"b":0${bindings}}\n`;
      bindingsClean = scrub !== undefined && scrub(probe) === probe;
    }
    if (msg !== lastMsg) {
      lastMsg = msg;
      lastMsgJson = JSON.stringify(msg);
    }
    sink(
      `{"level":"${level}","time":${lastTimeText}${bindings}${fieldsJson},"msg":${lastMsgJson}}\n`,
      bindingsClean,
    );
  };
}

/** Options for {@link createLogDestination}. */
export interface LogDestinationOptions {
  /** File to append to (created if missing). Give this or `fd`. */
  path?: string;
  /** An open file descriptor, e.g. 1 for stdout. Not closed by `end()`. */
  fd?: number;
  /** Write out once this many bytes are buffered; default 65536. 0 writes every line at once. */
  bufferSize?: number;
  /** Also write out at least this often (ms), so a quiet service's lines are not held back; default 250. */
  flushIntervalMs?: number;
}

/** A buffered, synchronous log destination; see {@link createLogDestination}. */
export interface LogDestination {
  write(line: string): boolean;
  /** Write out the buffer now (synchronously), then call `cb`. pino's `logger.flush()` calls this. */
  flush(cb?: (err?: Error | null) => void): void;
  flushSync(): void;
  /** Flush, stop the timer, close the file (when opened from `path`). */
  end(): void;
  /** Lines dropped because the file could not be written (disk full, closed descriptor). */
  readonly dropped: number;
}

/**
 * A log destination that collects lines in memory and writes them with one synchronous `write(2)`
 * per batch: when `bufferSize` bytes are waiting, every `flushIntervalMs`, on
 * `logger.flush()` (the shutdown controller calls it) and when the process exits. A batch is one
 * system call instead of one per line, and no thread-pool round trip per write.
 *
 * Trade-off: lines still in the buffer are lost if the process is killed without running its exit
 * handlers (SIGKILL, an out-of-memory abort, a signal with no handler installed): at most
 * `bufferSize` bytes or `flushIntervalMs` worth of lines. Uncaught exceptions and
 * `process.exit()` do flush. Use `bufferSize: 0` (or the default stdout destination) when every
 * line must be on disk before the request completes.
 *
 * @example
 * const logger = createLogger({
 *   service: 'orders',
 *   instanceId,
 *   destination: createLogDestination({ path: '/var/log/orders.ndjson' }),
 * });
 */
export function createLogDestination(opts: LogDestinationOptions): LogDestination {
  if ((opts.path === undefined) === (opts.fd === undefined)) {
    throw new TypeError('createLogDestination: give exactly one of path or fd');
  }
  const ownFd = opts.path !== undefined;
  const fd = opts.path !== undefined ? openSync(opts.path, 'a') : (opts.fd as number);
  const limit = opts.bufferSize ?? 65_536;
  // Lines are encoded into one reusable buffer as they arrive, so a waiting line is a few bytes
  // in a buffer rather than a string the garbage collector keeps copying until the next flush.
  const buf = Buffer.allocUnsafe(limit + 16_384);
  let used = 0;
  let pendingLines = 0;
  let dropped = 0;
  let closed = false;
  const pause = new Int32Array(new SharedArrayBuffer(4));

  const writeAll = (bytes: Buffer, length: number) => {
    let off = 0;
    // Regular files take the whole batch at once; pipes and ttys may take part of it or answer
    // EAGAIN, in which case wait a moment and go on (blocking, as a synchronous logger does).
    while (off < length) {
      try {
        off += writeSync(fd, bytes, off, length - off);
      } catch (err) {
        if ((err as NodeJS.ErrnoException).code !== 'EAGAIN') throw err;
        Atomics.wait(pause, 0, 0, 1);
      }
    }
  };

  const flushSync = () => {
    if (used === 0) return;
    const length = used;
    const lines = pendingLines;
    used = 0;
    pendingLines = 0;
    try {
      writeAll(buf, length);
    } catch {
      // Logging never throws into request handling; the count says what was lost.
      dropped += lines;
    }
  };

  // A line longer than the buffer could ever hold is written on its own, after what is buffered.
  const writeAlone = (line: string) => {
    const bytes = Buffer.from(line, 'utf8');
    try {
      writeAll(bytes, bytes.length);
    } catch {
      dropped++;
    }
  };

  const timer = setInterval(flushSync, opts.flushIntervalMs ?? 250);
  timer.unref();
  process.on('exit', flushSync);

  return {
    write(line) {
      if (closed) {
        dropped++;
        return false;
      }
      // UTF-8 takes at most 3 bytes per UTF-16 code unit.
      if (used + line.length * 3 > buf.length) {
        flushSync();
        if (line.length * 3 > buf.length) {
          writeAlone(line);
          return true;
        }
      }
      used += buf.write(line, used);
      pendingLines++;
      if (used >= limit) flushSync();
      return true;
    },
    flush(cb) {
      flushSync();
      cb?.(null);
    },
    flushSync,
    end() {
      if (closed) return;
      flushSync();
      closed = true;
      clearInterval(timer);
      process.removeListener('exit', flushSync);
      if (ownFd) closeSync(fd);
    },
    get dropped() {
      return dropped;
    },
  };
}
