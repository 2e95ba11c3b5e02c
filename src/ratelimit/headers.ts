/**
 * Response headers for a decision, framework-agnostic so every adapter emits the same ones:
 * - `RateLimit-Policy` / `RateLimit` as structured-field lists per the IETF httpapi
 *   ratelimit-headers draft (-10): `"ip";q=200;w=60` and `"ip";r=187;t=41`, one item per limit;
 * - legacy `X-RateLimit-Limit/-Remaining/-Reset` for the most constrained limit (reset in seconds);
 * - `Retry-After` (seconds) when rejected.
 * Subjects (IPs, identities) are never put in headers: the draft's `pk` parameter is omitted.
 */
import type { Decision, LimitResult } from './types.js';

/** Header name -> value. */
export type RateLimitHeaders = Record<string, string>;

const secs = (ms: number) => Math.max(0, Math.ceil(ms / 1000));

function tightest(limits: LimitResult[]): LimitResult | undefined {
  let best: LimitResult | undefined;
  for (const l of limits) {
    if (l.mode !== 'enforce') continue;
    if (
      !best ||
      (!l.allowed && best.allowed) ||
      (l.allowed === best.allowed && l.remaining < best.remaining)
    ) {
      best = l;
    }
  }
  return best;
}

/**
 * Compute the headers of a decision.
 *
 * @example
 * headersFor(decision);
 * // { 'RateLimit-Policy': '"ip";q=200;w=60', RateLimit: '"ip";r=199;t=60', 'X-RateLimit-Limit': '200', ... }
 */
export function headersFor(decision: Decision, which: 'both' | 'ietf' | 'legacy' = 'both'): RateLimitHeaders {
  const h: RateLimitHeaders = {};
  const enforced = decision.limits.filter((l) => l.mode === 'enforce');
  if (enforced.length > 0 && which !== 'legacy') {
    h['RateLimit-Policy'] = enforced
      .map((l) => `"${l.name}";q=${l.requests};w=${secs(l.windowMs)}`)
      .join(', ');
    h.RateLimit = enforced.map((l) => `"${l.name}";r=${l.remaining};t=${secs(l.resetMs)}`).join(', ');
  }
  const t = tightest(decision.limits);
  if (t && which !== 'ietf') {
    h['X-RateLimit-Limit'] = String(t.requests);
    h['X-RateLimit-Remaining'] = String(t.remaining);
    h['X-RateLimit-Reset'] = String(secs(t.allowed ? t.resetMs : Math.max(t.resetMs, t.retryAfterMs)));
  }
  if (!decision.allowed) h['Retry-After'] = String(Math.max(1, secs(decision.retryAfterMs)));
  return h;
}
