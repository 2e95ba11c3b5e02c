/**
 * Active health checks: every interval, one GET of the health path per backend on a fresh
 * connection (so a check never queues behind traffic on a pooled socket). 2xx means ready.
 */
import { request } from 'node:http';
import type { BackendState } from './backends.js';
import type { BalancerCore } from './core.js';

/**
 * Runs checks for every backend of one balancer on a single timer.
 *
 * @example
 * const hc = new HealthChecker(core, '/health/ready', 1000);
 * hc.start();
 * hc.check(backend); // immediately, e.g. right after addBackend
 */
export class HealthChecker {
  private timer: NodeJS.Timeout | undefined;
  private readonly core: BalancerCore;
  private readonly path: string;
  private readonly intervalMs: number;
  private readonly timeoutMs: number;

  constructor(core: BalancerCore, path: string, intervalMs: number, timeoutMs: number) {
    this.core = core;
    this.path = path;
    this.intervalMs = intervalMs;
    // A hung replica must eventually fail its check; checks never overlap, so a timeout longer
    // than the interval only skips ticks.
    this.timeoutMs = timeoutMs;
  }

  start(): void {
    if (this.timer) return;
    this.timer = setInterval(() => {
      for (const b of this.core.backends.list) this.check(b);
    }, this.intervalMs);
    this.timer.unref();
  }

  stop(): void {
    if (this.timer) clearInterval(this.timer);
    this.timer = undefined;
  }

  check(b: BackendState): void {
    if (b.checking || b.removed) return;
    b.checking = true;
    let settled = false;
    const finish = (ok: boolean, reason: string): void => {
      if (settled) return;
      settled = true;
      b.checking = false;
      this.core.markHealth(b, ok, reason);
    };
    const req = request(
      {
        host: b.host,
        port: b.port,
        path: this.path,
        method: 'GET',
        agent: false,
        timeout: this.timeoutMs,
        headers: { 'user-agent': 'shoal-balancer-health', connection: 'close' },
      },
      (res) => {
        const status = res.statusCode ?? 0;
        res.resume();
        res.on('end', () => finish(status >= 200 && status < 300, 'health check returned ' + status));
        res.on('error', () => finish(false, 'health check response aborted'));
      },
    );
    req.on('timeout', () => {
      req.destroy();
      finish(false, 'health check timed out after ' + this.timeoutMs + 'ms');
    });
    req.on('error', (err: NodeJS.ErrnoException) =>
      finish(false, 'health check failed: ' + (err.code ?? err.message)),
    );
    req.end();
  }
}
