/**
 * In-memory fallback counters used by the `local` failure policy while Redis is unreachable.
 * Each instance admits `requests / replicas` per window, so a fleet as a whole stays near the
 * configured limit without coordination. Sliding-window counter on the local clock, bounded LRU.
 */
import { BoundedLru } from './lru.js';

interface Counter {
  window: number;
  prev: number;
  cur: number;
}

/** One check against the local counters. */
export interface LocalCheck {
  key: string;
  requests: number;
  windowMs: number;
  cost: number;
}

/**
 * Approximate per-instance counters for degraded operation.
 *
 * @example
 * const local = new LocalCounters(10_000, 3, Date.now);
 * local.check([{ key: 'ip:1.2.3.4', requests: 300, windowMs: 60_000, cost: 1 }]);
 */
export class LocalCounters {
  readonly #lru: BoundedLru<Counter>;

  constructor(
    capacity: number,
    private readonly replicas: number,
    private readonly clock: () => number,
  ) {
    this.#lru = new BoundedLru(capacity);
  }

  /** Share of a fleet-wide limit this instance may admit alone. */
  share(requests: number): number {
    return Math.max(1, Math.floor(requests / this.replicas));
  }

  /**
   * Decide all checks; charge all only when all fit. Returns per check `[allowed, remaining, retryMs]`.
   */
  check(checks: LocalCheck[]): Array<[boolean, number, number]> {
    const now = this.clock();
    const out: Array<[boolean, number, number]> = [];
    const states: Counter[] = [];
    let all = true;
    for (const c of checks) {
      const limit = this.share(c.requests);
      const w = Math.floor(now / c.windowMs);
      let s = this.#lru.get(c.key);
      if (!s || s.window < w - 1) s = { window: w, prev: 0, cur: 0 };
      else if (s.window === w - 1) s = { window: w, prev: s.cur, cur: 0 };
      const elapsed = now - w * c.windowMs;
      const est = (s.prev * (c.windowMs - elapsed)) / c.windowMs + s.cur;
      const ok = est + c.cost <= limit;
      if (!ok) all = false;
      states.push(s);
      out.push([ok, Math.max(0, Math.floor(limit - est - (ok ? c.cost : 0))), ok ? 0 : c.windowMs - elapsed]);
    }
    checks.forEach((c, i) => {
      const s = states[i]!;
      if (all) s.cur += c.cost;
      this.#lru.set(c.key, s);
    });
    return out;
  }

  clear(): void {
    this.#lru.clear();
  }
}
