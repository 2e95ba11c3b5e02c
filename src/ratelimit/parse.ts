/**
 * Limit strings such as "200/min", "10/s", "5000/h" or "100/10s", parsed strictly at startup so a
 * typo ("200/mn", "-5/min") stops the process with the offending value instead of silently
 * limiting at a rate nobody chose.
 */
import { ShoalError } from '../errors.js';

/** A parsed limit: `requests` per `windowMs`. */
export interface Rate {
  requests: number;
  windowMs: number;
}

const UNITS: Record<string, number> = {
  ms: 1,
  s: 1000,
  sec: 1000,
  second: 1000,
  m: 60_000,
  min: 60_000,
  minute: 60_000,
  h: 3_600_000,
  hr: 3_600_000,
  hour: 3_600_000,
  d: 86_400_000,
  day: 86_400_000,
};

const MAX_REQUESTS = 1_000_000_000;
const MAX_WINDOW_MS = 31 * 86_400_000;

/**
 * Parse `"<requests>/<window>"`; the window is a unit (`ms s sec second m min minute h hr hour d
 * day`), optionally preceded by a count (`100/10s`). Throws `ratelimit.invalid_limit` naming the
 * value (and `what`, e.g. the environment variable it came from).
 *
 * @example
 * parseRate('200/min');   // { requests: 200, windowMs: 60000 }
 * parseRate('100/10s');   // { requests: 100, windowMs: 10000 }
 * parseRate('200/mn', 'ORDERS_LIMIT_IP'); // throws: ORDERS_LIMIT_IP: invalid rate limit "200/mn" ...
 */
export function parseRate(input: string, what = 'limit'): Rate {
  const m = /^\s*(\d+)\s*\/\s*(\d+)?\s*([a-z]+)\s*$/.exec(input);
  const fail = (why: string): never => {
    throw new ShoalError(
      'ratelimit.invalid_limit',
      `${what}: invalid rate limit ${JSON.stringify(input)} (${why}); expected e.g. "200/min", "10/s", "5000/h" or "100/10s"`,
      { detail: { value: input, what } },
    );
  };
  if (!m) return fail('not <positive integer>/<window>');
  const requests = Number(m[1]);
  const unit = UNITS[m[3]!];
  if (unit === undefined) return fail(`unknown unit "${m[3]}"`);
  const count = m[2] === undefined ? 1 : Number(m[2]);
  const windowMs = count * unit;
  if (!Number.isSafeInteger(requests) || requests < 1 || requests > MAX_REQUESTS) {
    return fail(`requests must be 1..${MAX_REQUESTS}`);
  }
  if (!(windowMs >= 1 && windowMs <= MAX_WINDOW_MS)) return fail('window must be 1 ms..31 days');
  return { requests, windowMs };
}

/**
 * Accept a rate as a string or an object and validate either form.
 *
 * @example
 * toRate({ requests: 50, windowMs: 60_000 });
 */
export function toRate(input: string | Rate, what = 'limit'): Rate {
  if (typeof input === 'string') return parseRate(input, what);
  const { requests, windowMs } = input;
  if (
    !Number.isSafeInteger(requests) ||
    requests < 1 ||
    requests > MAX_REQUESTS ||
    !Number.isSafeInteger(windowMs) ||
    windowMs < 1 ||
    windowMs > MAX_WINDOW_MS
  ) {
    throw new ShoalError(
      'ratelimit.invalid_limit',
      `${what}: invalid rate limit ${JSON.stringify(input)} (requests 1..${MAX_REQUESTS}, windowMs 1..${MAX_WINDOW_MS})`,
      { detail: { what } },
    );
  }
  return { requests, windowMs };
}

/**
 * Render a rate back to its shortest string form (for logs, problem bodies and the admin API).
 *
 * @example
 * formatRate({ requests: 200, windowMs: 60000 }); // "200/min"
 */
export function formatRate(rate: Rate): string {
  const { requests, windowMs } = rate;
  for (const [unit, ms] of [
    ['d', 86_400_000],
    ['h', 3_600_000],
    ['min', 60_000],
    ['s', 1000],
  ] as const) {
    if (windowMs === ms) return `${requests}/${unit}`;
    if (windowMs % ms === 0) return `${requests}/${windowMs / ms}${unit}`;
  }
  return `${requests}/${windowMs}ms`;
}
