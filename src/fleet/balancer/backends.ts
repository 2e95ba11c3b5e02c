/**
 * Backend bookkeeping and the routing strategies: which replica gets the next request.
 */
import type { UpstreamConn } from './upstream.js';

/** Lifecycle of one backend as the balancer sees it. */
export type BackendStateName = 'starting' | 'ready' | 'unready' | 'draining' | 'ejected';

/** How the next request picks a backend. */
export type Strategy = 'least-outstanding' | 'round-robin' | 'sticky';

interface Waiter {
  resolve(): void;
  reject(err: Error): void;
  timer: NodeJS.Timeout | undefined;
}

/**
 * Mutable per-backend state: routing state, counters, idle upstream sockets, waiters.
 *
 * @example
 * const b = new BackendState({ id: 'api-1', host: '127.0.0.1', port: 3001 });
 * b.state; // 'starting'
 */
export class BackendState {
  readonly id: string;
  readonly host: string;
  readonly port: number;
  /** The sticky cookie value naming this backend. */
  readonly cookieValue: string;
  state: BackendStateName = 'starting';
  inFlight = 0;
  requests = 0;
  failures = 0;
  /** Connections switched to another protocol (WebSocket) that are still open. */
  upgraded = 0;
  removed = false;
  checking = false;
  /** Consecutive failed active checks. */
  healthFailures = 0;
  lastHealthError = '';
  readonly idle: UpstreamConn[] = [];
  readonly readyWaiters: Waiter[] = [];
  readonly drainWaiters: Array<() => void> = [];

  constructor(b: { id: string; host: string; port: number }) {
    this.id = b.id;
    this.host = b.host;
    this.port = b.port;
    this.cookieValue = encodeURIComponent(b.id);
  }

  /** Resolve or reject everyone waiting for readiness. */
  settleReady(err?: Error): void {
    const ws = this.readyWaiters.splice(0);
    for (const w of ws) {
      if (w.timer) clearTimeout(w.timer);
      if (err) w.reject(err);
      else w.resolve();
    }
  }

  /** Called whenever inFlight drops; resolves drain waiters at zero. */
  settleDrainIfIdle(): void {
    if (this.inFlight !== 0 || this.drainWaiters.length === 0) return;
    for (const r of this.drainWaiters.splice(0)) r();
  }
}

/**
 * The ordered set of backends plus a rotating cursor, so equal candidates share load.
 *
 * @example
 * const set = new BackendSet();
 * set.add(new BackendState({ id: 'a', host: '127.0.0.1', port: 3001 }));
 * set.pick('least-outstanding', null); // null until 'a' is ready
 */
export class BackendSet {
  readonly list: BackendState[] = [];
  readonly byId = new Map<string, BackendState>();
  private cursor = 0;

  add(b: BackendState): void {
    this.list.push(b);
    this.byId.set(b.id, b);
  }

  remove(id: string): BackendState | undefined {
    const b = this.byId.get(id);
    if (!b) return undefined;
    this.byId.delete(id);
    const i = this.list.indexOf(b);
    if (i >= 0) this.list.splice(i, 1);
    return b;
  }

  /** A routable backend by sticky cookie value, if it is still ready. */
  byCookie(value: string): BackendState | null {
    const b = this.byId.get(decodeCookie(value));
    return b && b.state === 'ready' ? b : null;
  }

  /**
   * Choose a ready backend other than `exclude`. Least-outstanding scans from the cursor and
   * keeps the first minimum, so ties rotate; round-robin takes the next ready one.
   */
  pick(strategy: Strategy, exclude: BackendState | null): BackendState | null {
    const list = this.list;
    const n = list.length;
    if (n === 0) return null;
    let start = this.cursor;
    if (start >= n) start = 0;
    let best: BackendState | null = null;
    let bestIdx = 0;
    if (strategy === 'round-robin') {
      for (let k = 0; k < n; k++) {
        const idx = start + k < n ? start + k : start + k - n;
        const b = list[idx]!;
        if (b.state === 'ready' && b !== exclude) {
          best = b;
          bestIdx = idx;
          break;
        }
      }
      this.cursor = bestIdx + 1;
      return best;
    }
    let bestLoad = Number.POSITIVE_INFINITY;
    for (let k = 0; k < n; k++) {
      const idx = start + k < n ? start + k : start + k - n;
      const b = list[idx]!;
      if (b.state === 'ready' && b !== exclude && b.inFlight < bestLoad) {
        best = b;
        bestLoad = b.inFlight;
      }
    }
    this.cursor = start + 1;
    return best;
  }
}

function decodeCookie(v: string): string {
  try {
    return decodeURIComponent(v);
  } catch {
    return v;
  }
}
