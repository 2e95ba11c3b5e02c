/**
 * Latencies as request log lines print them. Internal: not part of any published subpath.
 */

// The fractional part of a latency in whole microseconds, as JavaScript prints n / 1000: '' for
// 0, '.5' for 500, '.05' for 50, '.123' for 123. Immutable, shared by every recorder.
const MS_FRACTIONS: readonly string[] = Array.from({ length: 1000 }, (_, f) =>
  f === 0 ? '' : `.${String(f).padStart(3, '0').replace(/0+$/, '')}`,
);

/**
 * `latency_ms` as it appears in a request line: `ms` rounded to the microsecond, printed exactly
 * as `String(Math.round(ms * 1000) / 1000)` would print it, from integers and a table. Printing
 * a fractional number is the costliest step in formatting a request line.
 *
 * @example
 * latencyText(1.2344); // '1.234'
 * latencyText(0.05); // '0.05'
 */
export function latencyText(ms: number): string {
  const us = Math.round(ms * 1000);
  const whole = Math.floor(us / 1000);
  return `${whole}${MS_FRACTIONS[us - whole * 1000]}`;
}
