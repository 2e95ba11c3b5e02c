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
import { closeSync, openSync } from 'node:fs';
import { Worker } from 'node:worker_threads';
import { type DestinationStream, type Logger, type LoggerOptions as PinoOptions, pino } from 'pino';
import {
  CONTROL_WORDS,
  DROPPED,
  FRAGMENT_STORE_BYTES,
  FREE,
  HELD_BY_WORKER,
  LOCK,
  type RingInit,
  RingProducer,
  RingViews,
  writeFully,
} from './log-ring.js';

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

// Set on destinations from createLogDestination({ thread: true }) and on the loggers writing to
// them: takes a request line as its parts, to be formatted on the writer thread. Answers false
// when it cannot (a fragment too long to intern, an id that is not a checked one): the caller
// then writes the line as text.
const REQUEST_RECORD = Symbol('shoal.log.requestRecord');
type RequestRecordSink = (
  error: boolean,
  status: number,
  bindings: string,
  method: string,
  route: string,
  requestId: string,
  time: number,
  ms: number,
) => boolean;

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
    const records = (stream as unknown as Record<symbol, RequestRecordSink | undefined>)[REQUEST_RECORD];
    if (records) Object.defineProperty(logger, REQUEST_RECORD, { value: records });
  }
  return logger;
}

// Checked per line: the level can change at runtime. createLogger's loggers keep pino's default
// values (a higher value is more severe), so one comparison does.
const levelOn = (logger: Logger, level: 'info' | 'error'): boolean =>
  logger.levelVal <= (level === 'error' ? 50 : 30);

/**
 * Whether a logger's bindings (as pino serialised them) pass the redaction screen unchanged,
 * checked once per distinct bindings string. One checker per request writer.
 */
function bindingsChecker(logger: Logger): (bindings: string) => boolean {
  const scrub = (logger as unknown as Record<symbol, ((line: string) => string) | undefined>)[SCRUB];
  let checked: string | undefined;
  let clean = false;
  return (bindings) => {
    if (bindings !== checked) {
      checked = bindings;
      const probe = `{"b":0${bindings}}\n`;
      clean = scrub !== undefined && scrub(probe) === probe;
    }
    return clean;
  };
}

/**
 * For the request observers, when the logger writes to `createLogDestination({ thread: true })`:
 * hands the parts of a request line to the writer thread, which formats exactly the line
 * {@link requestLineWriter} would have written. Answers false when the line must be written as
 * text instead (bindings that need redaction, a fragment too long to keep); true when it was
 * taken or the level is off. Undefined for every other logger.
 *
 * @example
 * const record = requestRecordWriter(logger);
 * record?.('info', requestId, 'GET', '/api/orders/:id', 200, 1.25);
 */
export function requestRecordWriter(
  logger: Logger,
):
  | ((
      level: 'info' | 'error',
      requestId: string,
      method: string,
      route: string,
      status: number,
      ms: number,
    ) => boolean)
  | undefined {
  const sink = (logger as unknown as Record<symbol, RequestRecordSink | undefined>)[REQUEST_RECORD];
  if (!sink) return undefined;
  const chindingsSym = pino.symbols.chindingsSym;
  const clean = bindingsChecker(logger);
  return (level, requestId, method, route, status, ms) => {
    if (!levelOn(logger, level)) return true;
    const bindings = (logger as unknown as Record<symbol, string>)[chindingsSym] ?? '';
    if (!clean(bindings)) return false;
    return sink(level === 'error', status, bindings, method, route, requestId, Date.now(), ms);
  };
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
  // The caller's fields are fixed keys with safe values (see above); only the logger's bindings
  // can hold a sensitive key.
  const clean = bindingsChecker(logger);
  let lastMsg = '';
  let lastMsgJson = '""';
  // Lines in the same millisecond share the text of their time: a busy server writes dozens per
  // millisecond, and formatting a 13-digit number costs more than comparing it.
  let lastTime = -1;
  let lastTimeText = '';
  return (level, fieldsJson, msg) => {
    if (!levelOn(logger, level)) return;
    const time = Date.now();
    if (time !== lastTime) {
      lastTime = time;
      lastTimeText = String(time);
    }
    // The logger's bindings (service, instance_id, and any child bindings) as pino serialised them.
    const bindings = (logger as unknown as Record<symbol, string>)[chindingsSym] ?? '';
    const bindingsClean = clean(bindings);
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
  /**
   * Format request lines and write batches on a writer thread (default false). The logging thread
   * only copies each line, or a request line's numbers, into shared memory; the request observers
   * of `shoal/hono` then cost less per request. Lines keep their order, and flushing, the process
   * `exit` event and a full buffer still write everything out synchronously. Ignored when
   * `bufferSize` is 0.
   */
  thread?: boolean;
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
  if (opts.thread === true && limit > 0) {
    return threadedDestination(fd, ownFd, limit, opts.flushIntervalMs ?? 250);
  }
  // Lines are encoded into one reusable buffer as they arrive, so a waiting line is a few bytes
  // in a buffer rather than a string the garbage collector keeps copying until the next flush.
  const buf = Buffer.allocUnsafe(limit + 16_384);
  let used = 0;
  let pendingLines = 0;
  let dropped = 0;
  let closed = false;
  const writeAll = (bytes: Buffer, length: number) => writeFully(fd, bytes, 0, length);

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

const WRITER = Symbol('shoal.log.writer');

// The writer thread's entry point. Run from the TypeScript sources (tests, tsx), a worker does not
// inherit the parent's loaders on Node 20, so it registers tsx itself before loading the entry.
// The writer needs none of the process's Node options, and some (such as --input-type) would stop
// a worker from starting, so it gets none.
function startRingWriter(init: RingInit): Worker {
  const own = import.meta.url;
  if (own.endsWith('.ts')) {
    const entry = new URL('./log-writer.ts', own).href;
    const tsx = import.meta.resolve('tsx/esm/api');
    const code = `import(${JSON.stringify(tsx)}).then((m) => { m.register(); return import(${JSON.stringify(entry)}); })`;
    return new Worker(code, { eval: true, workerData: init, execArgv: [] });
  }
  return new Worker(new URL('./log-writer.js', own), { workerData: init, execArgv: [] });
}

function threadedDestination(fd: number, ownFd: boolean, batchBytes: number, flushIntervalMs: number) {
  // Records are about a third of the size of the lines made from them; the ring holds many
  // batches so that a writer thread that falls behind for a moment does not stall logging.
  const ringBytes = Math.max(1 << 20, batchBytes * 8);
  const init: RingInit = {
    control: new SharedArrayBuffer(CONTROL_WORDS * 4),
    data: new SharedArrayBuffer(ringBytes),
    fragments: new SharedArrayBuffer(FRAGMENT_STORE_BYTES),
    fd,
    batchBytes,
    flushIntervalMs,
  };
  const views = new RingViews(init);
  const producer = new RingProducer(views, fd, batchBytes, Math.max(1024, batchBytes >> 1));
  let closed = false;
  let refused = 0;
  let writer: Worker | undefined;

  try {
    const worker = startRingWriter(init);
    writer = worker;
    worker.unref();
    producer.threaded = true;
    // Gone (an error, a terminate()): this thread writes from now on, and a lock the writer held
    // when it stopped is released; a batch it had not finished may then be written twice, never lost.
    const gone = () => {
      producer.threaded = false;
      Atomics.compareExchange(views.ctl, LOCK, HELD_BY_WORKER, FREE);
    };
    worker.on('error', (err: Error) => {
      gone();
      // Nothing is lost, but lines now cost the logging thread what the writer would have paid.
      process.emitWarning(
        `log writer thread failed (${err.message}); lines are written on the logging thread`,
        {
          code: 'SHOAL_LOG_WRITER',
        },
      );
    });
    worker.on('exit', gone);
  } catch {
    producer.threaded = false;
  }

  const flushSync = () => {
    if (!closed) producer.flush();
  };
  process.on('exit', flushSync);

  // Publishes what the writer thread has not been shown yet (records are published in batches),
  // or, with no writer thread, writes it out.
  const timer = setInterval(() => {
    if (closed) return;
    if (producer.threaded) producer.sync();
    else producer.flush();
  }, flushIntervalMs);
  timer.unref();

  // Method and route keys to the ids of their JSON-quoted forms.
  const quotedIds = new Map<string, number>();
  const quotedId = (s: string): number => {
    let id = quotedIds.get(s);
    if (id === undefined) {
      id = producer.intern(JSON.stringify(s));
      if (id >= 0) quotedIds.set(s, id);
    }
    return id;
  };
  // The same bindings, method and route string objects come back request after request (the
  // logger's, the parser's and the router's own), so the last of each is remembered by identity
  // before any map lookup.
  let lastBindings = '';
  let lastBindingsId = -1;
  let lastMethod = '';
  let lastMethodId = -1;
  let lastRoute = '';
  let lastRouteId = -1;
  const record: RequestRecordSink = (error, status, bindings, method, route, requestId, time, ms) => {
    if (closed) {
      refused++;
      return true;
    }
    if (requestId.length > 128) return false;
    if (bindings !== lastBindings || lastBindingsId < 0) {
      lastBindings = bindings;
      lastBindingsId = producer.intern(bindings);
    }
    if (method !== lastMethod || lastMethodId < 0) {
      lastMethod = method;
      lastMethodId = quotedId(method);
    }
    if (route !== lastRoute || lastRouteId < 0) {
      lastRoute = route;
      lastRouteId = quotedId(route);
    }
    if (lastBindingsId < 0 || lastMethodId < 0 || lastRouteId < 0) return false;
    producer.request(error, status, lastBindingsId, lastMethodId, lastRouteId, requestId, time, ms);
    return true;
  };

  return {
    [REQUEST_RECORD]: record,
    // For tests that stop the writer thread to see this thread take over.
    [WRITER]: writer,
    write(line: string): boolean {
      if (closed) {
        refused++;
        return false;
      }
      producer.text(line);
      return true;
    },
    flush(cb?: (err?: Error | null) => void) {
      flushSync();
      cb?.(null);
    },
    flushSync,
    end() {
      if (closed) return;
      producer.seal();
      closed = true;
      clearInterval(timer);
      process.removeListener('exit', flushSync);
      if (ownFd) closeSync(fd);
    },
    get dropped() {
      return refused + producer.dropped + Atomics.load(views.ctl, DROPPED);
    },
  } satisfies LogDestination & { [REQUEST_RECORD]: RequestRecordSink; [WRITER]: Worker | undefined };
}
