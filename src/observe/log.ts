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

/**
 * Create the service's root logger: JSON lines with `service` and `instance_id` on every line,
 * epoch-millisecond `time`, level names, and redaction of credentials that cannot be switched off.
 *
 * @example
 * const log = createLogger({ service: 'orders', instanceId: process.env.SHOAL_INSTANCE_ID ?? 'local' });
 * log.info({ user: { name: 'a', apiToken: 'x' } }, 'signed in'); // apiToken is logged as "[Redacted]"
 */
export function createLogger(opts: LoggerOptions): Logger {
  const options: PinoOptions = {
    level: opts.level ?? 'info',
    base: { service: opts.service, instance_id: opts.instanceId },
    // Epoch milliseconds (pino's default): formatting an ISO date costs more than the rest of the
    // request line; log shippers and `pino-pretty` convert it.
    timestamp: pino.stdTimeFunctions.epochTime,
    formatters: { level: (label) => ({ level: label }) },
    hooks: { streamWrite: createRedactor({ names: opts.redact, censor: opts.censor }) },
  };
  return opts.destination ? pino(options, opts.destination as DestinationStream) : pino(options);
}
