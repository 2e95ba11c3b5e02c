/**
 * A circuit breaker around Redis calls, so a dead Redis costs no per-request latency: after
 * `failureThreshold` consecutive failures it opens for `cooldownMs`, then lets one probe through
 * (half-open); the probe's success closes it, its failure re-opens it.
 */

/** Breaker states. */
export type BreakerState = 'closed' | 'open' | 'half-open';

/** Options of {@link CircuitBreaker}. */
export interface BreakerOptions {
  failureThreshold: number;
  cooldownMs: number;
  clock: () => number;
  onTransition: (from: BreakerState, to: BreakerState, reason: string) => void;
}

/**
 * Tracks Redis health for one limiter.
 *
 * @example
 * const b = new CircuitBreaker({ failureThreshold: 3, cooldownMs: 1000, clock: Date.now, onTransition() {} });
 * if (b.allow()) { try { await call(); b.success(); } catch (e) { b.failure('error'); } }
 */
export class CircuitBreaker {
  #state: BreakerState = 'closed';
  #failures = 0;
  #openedAt = 0;
  #probeInFlight = false;

  constructor(private readonly options: BreakerOptions) {}

  get state(): BreakerState {
    return this.#state;
  }

  /** May this call go to Redis? In half-open state only one probe at a time may. */
  allow(): boolean {
    if (this.#state === 'closed') return true;
    if (this.#state === 'open') {
      if (this.options.clock() - this.#openedAt < this.options.cooldownMs) return false;
      this.#move('half-open', 'cooldown elapsed');
    }
    if (this.#probeInFlight) return false;
    this.#probeInFlight = true;
    return true;
  }

  success(): void {
    this.#failures = 0;
    this.#probeInFlight = false;
    if (this.#state !== 'closed') this.#move('closed', 'redis answered');
  }

  failure(reason: string): void {
    this.#probeInFlight = false;
    this.#failures++;
    if (
      this.#state === 'half-open' ||
      (this.#state === 'closed' && this.#failures >= this.options.failureThreshold)
    ) {
      this.#openedAt = this.options.clock();
      this.#move('open', reason);
    }
  }

  #move(to: BreakerState, reason: string): void {
    const from = this.#state;
    this.#state = to;
    this.options.onTransition(from, to, reason);
  }
}
