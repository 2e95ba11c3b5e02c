/**
 * The fleet's HTTP balancer: one per service, in front of that service's replicas.
 *
 * Balances per request (not per connection), pools keep-alive connections to replicas, streams
 * bodies both ways, passes upgrades through, routes only to replicas whose health check passes,
 * retries a safe request once when a replica fails before answering, and drains replicas for
 * rolling restarts. See docs/balancer.md.
 */
import { createServer, type Server } from 'node:net';
import { type Logger, silentLogger } from '../../contracts/index.js';
import { ShoalError } from '../../errors.js';
import { BackendSet, BackendState, type BackendStateName, type Strategy } from './backends.js';
import { ClientConnection } from './connection.js';
import { BalancerCore, type BalancerEvent } from './core.js';
import { HealthChecker } from './health.js';
import { closeIdle } from './upstream.js';

export type { Strategy } from './backends.js';
export type { BalancerEvent } from './core.js';

// Granularity of idle/response timeouts; keeps the default 4 s upstream idle timeout below
// Node's 5 s server keep-alive timeout even in the worst case.
const SWEEP_MS = 500;

/** A replica the balancer can send requests to. */
export interface Backend {
  id: string;
  host: string;
  port: number;
}

/** Options for {@link createBalancer}. */
export interface BalancerOptions {
  /** Service name, used in logs, events and problem bodies. */
  service: string;
  /** Public port; 0 picks a free one (see `listen()`'s result). */
  port: number;
  /** Interface to bind. Default `127.0.0.1`. */
  host?: string;
  /** Default `least-outstanding`. */
  strategy?: Strategy;
  /** Cookie naming the pinned replica when `strategy` is `sticky`. Default `shoal_sticky`. */
  stickyCookie?: string;
  /** Largest request body accepted; larger -> 413. Default 1 MiB. */
  maxBodyBytes?: number;
  /** Largest request or response head. Default 64 KiB. */
  maxHeaderBytes?: number;
  /**
   * Request bodies up to this size are kept in memory while streaming so a safe request can be
   * replayed on another replica after a connection failure. Larger bodies are never retried.
   * Default 64 KiB.
   */
  retryBodyBytes?: number;
  /** Health path polled on each replica. Default `/health/ready`. */
  healthPath?: string;
  /** Active health check period. Default 1000 ms. */
  healthIntervalMs?: number;
  /** A check without an answer within this long fails. Default 2000 ms. */
  healthTimeoutMs?: number;
  /** Consecutive failed checks that take a ready replica out of rotation. Default 2. */
  unhealthyThreshold?: number;
  /** No response head from a replica within this long -> 504. Default 60 s. */
  responseTimeoutMs?: number;
  /** Idle keep-alive connections to a replica are closed after this long. Default 4 s. */
  upstreamIdleTimeoutMs?: number;
  /** Idle keep-alive sockets kept per replica. Default 256. */
  maxIdlePerBackend?: number;
  /** Idle client connections are closed after this long. Default 65 s. */
  clientIdleTimeoutMs?: number;
  logger?: Logger;
  /** Backend state changes (added, ready, unready, ejected, draining, removed). */
  onEvent?: (e: BalancerEvent) => void;
}

/** One backend's state and counters, as `stats()` reports them. */
export interface BackendStats {
  id: string;
  state: BackendStateName;
  ready: boolean;
  inFlight: number;
  requests: number;
  failures: number;
  /** Open upgraded (WebSocket) connections. */
  upgraded: number;
  host: string;
  port: number;
}

/** A running (or not yet listening) balancer. */
export interface Balancer {
  /** Start accepting connections; resolves with the bound port. */
  listen(): Promise<{ port: number }>;
  /** Stop accepting, close every client and replica connection, stop health checks. */
  close(): Promise<void>;
  /** Register a replica; it gets traffic only after its first passing health check. */
  addBackend(b: Backend): void;
  /** Forget a replica at once; requests already in flight to it finish. */
  removeBackend(id: string): void;
  /** Route nothing new to the replica; resolves when its in-flight count reaches 0. */
  drainBackend(id: string): Promise<void>;
  /** Resolves when the replica is ready; rejects after `timeoutMs` or if it is removed. */
  waitReady(id: string, timeoutMs: number): Promise<void>;
  stats(): BackendStats[];
}

/**
 * Create a per-request HTTP balancer for one service.
 *
 * @example
 * const lb = createBalancer({ service: 'api', port: 8080 });
 * lb.addBackend({ id: 'api-1', host: '127.0.0.1', port: 3001 });
 * lb.addBackend({ id: 'api-2', host: '127.0.0.1', port: 3002 });
 * await lb.listen();
 * await lb.waitReady('api-1', 10_000);
 */
export function createBalancer(opts: BalancerOptions): Balancer {
  const backends = new BackendSet();
  const core = new BalancerCore(
    {
      service: opts.service,
      strategy: opts.strategy ?? 'least-outstanding',
      unhealthyThreshold: Math.max(1, opts.unhealthyThreshold ?? 2),
      stickyCookie: opts.stickyCookie ?? 'shoal_sticky',
      maxBodyBytes: opts.maxBodyBytes ?? 1024 * 1024,
      maxHeaderBytes: opts.maxHeaderBytes ?? 64 * 1024,
      retryBodyBytes: opts.retryBodyBytes ?? 64 * 1024,
      clientIdleTimeoutMs: opts.clientIdleTimeoutMs ?? 65_000,
      pool: {
        maxIdle: opts.maxIdlePerBackend ?? 256,
        idleTimeoutMs: opts.upstreamIdleTimeoutMs ?? 4000,
        responseTimeoutMs: opts.responseTimeoutMs ?? 60_000,
      },
      logger: (opts.logger ?? silentLogger).child({ component: 'balancer', service: opts.service }),
      onEvent: opts.onEvent,
    },
    backends,
  );
  const health = new HealthChecker(
    core,
    opts.healthPath ?? '/health/ready',
    opts.healthIntervalMs ?? 1000,
    opts.healthTimeoutMs ?? 2000,
  );
  let server: Server | null = null;

  const get = (id: string): BackendState => {
    const b = backends.byId.get(id);
    if (!b) throw new ShoalError('fleet.config_invalid', `balancer "${opts.service}": no backend "${id}"`);
    return b;
  };

  return {
    listen() {
      if (server)
        throw new ShoalError('fleet.config_invalid', `balancer "${opts.service}" is already listening`);
      const srv = createServer({ allowHalfOpen: true, noDelay: true }, (sock) => {
        core.conns.add(new ClientConnection(sock, core));
      });
      server = srv;
      health.start();
      core.startSweep(SWEEP_MS);
      return new Promise((resolve, reject) => {
        srv.once('error', reject);
        srv.listen(opts.port, opts.host ?? '127.0.0.1', () => {
          srv.off('error', reject);
          const addr = srv.address();
          resolve({ port: typeof addr === 'object' && addr ? addr.port : opts.port });
        });
      });
    },

    async close() {
      health.stop();
      core.stopSweep();
      const srv = server;
      server = null;
      const closed = srv ? new Promise<void>((r) => srv.close(() => r())) : Promise.resolve();
      for (const c of core.conns) c.destroy();
      core.conns.clear();
      for (const b of backends.list) {
        closeIdle(b);
        b.settleReady(new ShoalError('fleet.not_running', `balancer "${opts.service}" closed`));
        b.inFlight = 0;
        b.settleDrainIfIdle();
      }
      await closed;
    },

    addBackend(b) {
      if (backends.byId.has(b.id)) {
        throw new ShoalError(
          'fleet.config_invalid',
          `balancer "${opts.service}": backend "${b.id}" already exists`,
        );
      }
      const state = new BackendState(b);
      backends.add(state);
      core.emit('added', state);
      health.check(state);
    },

    removeBackend(id) {
      const b = backends.remove(id);
      if (!b) return;
      b.removed = true;
      closeIdle(b);
      b.settleReady(new ShoalError('fleet.not_running', `backend "${id}" was removed`));
      core.emit('removed', b);
    },

    drainBackend(id) {
      const b = backends.byId.get(id);
      if (!b) return Promise.resolve();
      core.drain(b);
      if (b.inFlight === 0) return Promise.resolve();
      return new Promise<void>((resolve) => b.drainWaiters.push(resolve));
    },

    waitReady(id, timeoutMs) {
      let b: BackendState;
      try {
        b = get(id);
      } catch (err) {
        return Promise.reject(err);
      }
      if (b.state === 'ready') return Promise.resolve();
      return new Promise<void>((resolve, reject) => {
        const w = {
          resolve,
          reject,
          timer: setTimeout(() => {
            const i = b.readyWaiters.indexOf(w);
            if (i >= 0) b.readyWaiters.splice(i, 1);
            const why = b.lastHealthError ? ` (last check: ${b.lastHealthError})` : '';
            reject(
              new ShoalError(
                'fleet.no_ready_replica',
                `backend "${id}" of "${opts.service}" not ready within ${timeoutMs}ms${why}`,
              ),
            );
          }, timeoutMs),
        };
        b.readyWaiters.push(w);
      });
    },

    stats() {
      return backends.list.map((b) => ({
        id: b.id,
        state: b.state,
        ready: b.state === 'ready',
        inFlight: b.inFlight,
        requests: b.requests,
        failures: b.failures,
        upgraded: b.upgraded,
        host: b.host,
        port: b.port,
      }));
    },
  };
}
