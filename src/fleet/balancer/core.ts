/**
 * Balancer-wide state and policy shared by every client connection: the backend set, the pool
 * options, limits, and the state transitions (ready, unready, ejected, draining) with their events.
 */
import type { Logger } from '../../contracts/index.js';
import type { BackendSet, BackendState, BackendStateName, Strategy } from './backends.js';
import type { ClientConnection } from './connection.js';
import type { RequestHeadContext } from './request-head.js';
import { closeIdle, expireIdle, type PoolOptions } from './upstream.js';

/** A backend state change, for the CLI log and the dashboard. */
export interface BalancerEvent {
  type: 'added' | 'ready' | 'unready' | 'ejected' | 'draining' | 'removed';
  service: string;
  backend: string;
  /** Why (health check status, connection error), when known. */
  reason?: string;
}

/** Everything a connection needs from its balancer, resolved once. */
export interface CoreSettings {
  service: string;
  strategy: Strategy;
  /** Consecutive failed checks that take a ready backend out. */
  unhealthyThreshold: number;
  stickyCookie: string;
  maxBodyBytes: number;
  maxHeaderBytes: number;
  retryBodyBytes: number;
  clientIdleTimeoutMs: number;
  pool: PoolOptions;
  logger: Logger;
  onEvent: ((e: BalancerEvent) => void) | undefined;
}

/**
 * Shared state behind one balancer.
 *
 * @example
 * const core = new BalancerCore(settings, backendSet);
 * core.markHealth(backend, true);
 */
export class BalancerCore {
  readonly s: CoreSettings;
  readonly backends: BackendSet;
  readonly headCtx: RequestHeadContext;
  /** Open client connections, so close() can end them. */
  readonly conns = new Set<ClientConnection>();
  /**
   * Coarse clock, advanced by the sweep timer. Timeouts are checked by one periodic sweep instead
   * of a timer per socket: re-arming socket timers on every request was measurable overhead.
   */
  now = Date.now();
  /** Read buffer shared by all upstream sockets (see UpstreamOwner.onUpstreamData). */
  readonly readBuffer = Buffer.allocUnsafe(64 * 1024);
  private sweepTimer: NodeJS.Timeout | undefined;

  constructor(s: CoreSettings, backends: BackendSet) {
    this.s = s;
    this.backends = backends;
    this.headCtx = { stickyCookie: s.strategy === 'sticky' ? s.stickyCookie : null };
  }

  emit(type: BalancerEvent['type'], b: BackendState, reason?: string): void {
    const e: BalancerEvent = { type, service: this.s.service, backend: b.id };
    if (reason !== undefined) e.reason = reason;
    const level = type === 'ejected' || type === 'unready' ? 'warn' : 'info';
    this.s.logger[level]({ service: this.s.service, backend: b.id, event: type, reason }, `backend ${type}`);
    try {
      this.s.onEvent?.(e);
    } catch (err) {
      this.s.logger.error({ err }, 'balancer onEvent handler threw');
    }
  }

  private setState(b: BackendState, state: BackendStateName, reason?: string): void {
    if (b.state === state) return;
    b.state = state;
    if (state === 'ready') {
      this.emit('ready', b);
      b.settleReady();
    } else {
      if (state !== 'draining') closeIdle(b);
      this.emit(state === 'starting' ? 'unready' : state, b, reason);
    }
  }

  /** Result of an active health check. */
  markHealth(b: BackendState, ok: boolean, reason: string): void {
    if (b.removed) return;
    b.lastHealthError = ok ? '' : reason;
    if (ok) {
      b.healthFailures = 0;
      if (b.state === 'starting' || b.state === 'unready' || b.state === 'ejected') this.setState(b, 'ready');
      return;
    }
    b.healthFailures++;
    // One slow check on a loaded machine must not take every replica out at once.
    if (b.state === 'ready' && b.healthFailures >= this.s.unhealthyThreshold)
      this.setState(b, 'unready', reason);
  }

  /** Passive ejection after a connection failure; the next passing health check re-admits. */
  eject(b: BackendState, reason: string): void {
    if (b.removed || b.state !== 'ready') return;
    this.setState(b, 'ejected', reason);
  }

  drain(b: BackendState): void {
    if (b.state === 'draining') return;
    closeIdle(b);
    this.setState(b, 'draining');
  }

  startSweep(periodMs: number): void {
    if (this.sweepTimer) return;
    this.sweepTimer = setInterval(() => this.sweep(), periodMs);
    this.sweepTimer.unref();
  }

  stopSweep(): void {
    if (this.sweepTimer) clearInterval(this.sweepTimer);
    this.sweepTimer = undefined;
  }

  sweep(): void {
    const now = Date.now();
    this.now = now;
    for (const c of this.conns) c.checkTimeouts(now);
    for (const b of this.backends.list) expireIdle(b, now, this.s.pool);
  }

  forget(c: ClientConnection): void {
    this.conns.delete(c);
  }

  /** An exchange with `b` is over (response complete, failed or aborted). */
  done(b: BackendState): void {
    b.inFlight--;
    if (b.inFlight === 0 && b.drainWaiters.length > 0) b.settleDrainIfIdle();
  }
}
