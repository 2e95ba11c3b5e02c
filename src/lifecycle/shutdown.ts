/**
 * Graceful shutdown for one instance.
 *
 * On SIGTERM/SIGINT (or `shutdown(reason)`): readiness fails at once; after `drainDelayMs` (time
 * for a balancer to notice) the HTTP servers stop accepting; in-flight requests finish, every
 * response finished from then on carries `Connection: close`, and keep-alive sockets that stay
 * idle are closed; then registered resources close in reverse order. One deadline covers
 * all of it. Exit code 0 when everything finished, 1 when the deadline (or a second signal)
 * forced the exit, with a log line naming what was still running.
 */
import type { IncomingMessage, Server, ServerResponse } from 'node:http';
import { Server as NetServer, type Socket } from 'node:net';
import type { Logger } from '../contracts/index.js';
import type { Health } from './health.js';

/** Options for {@link createShutdown}. */
export interface ShutdownOptions {
  logger: Logger;
  /** Readiness is failed here at the start of shutdown. */
  health?: Pick<Health, 'setDraining' | 'stop'>;
  /** Wait this long after failing readiness before refusing new connections (ms). */
  drainDelayMs: number;
  /** One deadline for the whole shutdown, from the signal (ms). */
  timeoutMs: number;
  /**
   * A keep-alive socket with no request is closed once it has been idle this long during the
   * drain (ms, default 1000). Closing a socket the moment it goes idle races with a client that
   * is just sending its next request; waiting a moment lets that request in (it is answered with
   * `Connection: close`).
   */
  idleCloseMs?: number;
  /** Called with the exit code; default `process.exit`. Tests pass a stub. */
  exit?: (code: number) => void;
}

/** A request that was still running, as named in the forced-exit log line. */
export interface InFlightRequest {
  method: string;
  path: string;
  age_ms: number;
}

/** The shutdown controller. */
export interface Shutdown {
  /**
   * Register something to close after the HTTP servers drained. Closed in reverse registration
   * order, so register stores first and the things that use them later.
   */
  register(name: string, close: () => Promise<unknown> | unknown): void;
  /** Track an HTTP server: its requests and sockets are drained on shutdown. Call before it serves. */
  trackServer(server: Server): void;
  /** Install SIGTERM/SIGINT handlers; returns a function removing them. */
  listen(signals?: NodeJS.Signals[]): () => void;
  /** Start shutting down (idempotent); resolves with the exit code after `exit` was called. */
  shutdown(reason: string): Promise<number>;
  /** True once shutdown has started. */
  readonly shuttingDown: boolean;
  /** The requests in flight right now on the tracked servers. */
  inFlight(): InFlightRequest[];
}

interface SocketState {
  active: number;
  idleSince: number;
}

interface Tracked {
  server: Server;
  sockets: Map<Socket, SocketState>;
  requests: Map<ServerResponse, { method: string; path: string; startedAt: number }>;
}

const sleep = (ms: number) => new Promise<void>((r) => setTimeout(r, ms));

/**
 * Create a shutdown controller.
 *
 * @example
 * const shutdown = createShutdown({ logger, health, drainDelayMs: 5000, timeoutMs: 30_000 });
 * shutdown.register('postgres', () => pool.end());
 * shutdown.register('redis', () => redis.quit());
 * shutdown.trackServer(server);
 * shutdown.listen(); // SIGTERM / SIGINT
 */
export function createShutdown(options: ShutdownOptions): Shutdown {
  const log = options.logger;
  const exit = options.exit ?? ((code: number) => process.exit(code));
  const idleCloseMs = options.idleCloseMs ?? 1000;
  const resources: { name: string; close: () => Promise<unknown> | unknown }[] = [];
  const servers: Tracked[] = [];
  let draining = false;
  let startedAt = 0;
  let current: Promise<number> | undefined;
  let closing: string | undefined;
  let exited = false;
  let forced = false;

  function finish(code: number): number {
    if (!exited) {
      exited = true;
      const flush = (log as { flush?: () => void }).flush;
      if (typeof flush === 'function') {
        try {
          flush.call(log);
        } catch {
          // a logger that cannot flush must not block the exit
        }
      }
      exit(code);
    }
    return code;
  }

  function inFlight(): InFlightRequest[] {
    const now = Date.now();
    const out: InFlightRequest[] = [];
    for (const t of servers) {
      for (const r of t.requests.values())
        out.push({ method: r.method, path: r.path, age_ms: now - r.startedAt });
    }
    return out.sort((a, b) => b.age_ms - a.age_ms);
  }

  function markClose(res: ServerResponse): void {
    if (!res.headersSent) res.setHeader('Connection', 'close');
  }

  function trackServer(server: Server): void {
    const t: Tracked = { server, sockets: new Map(), requests: new Map() };
    servers.push(t);
    server.on('connection', (socket: Socket) => {
      t.sockets.set(socket, { active: 0, idleSince: Date.now() });
      socket.once('close', () => t.sockets.delete(socket));
    });
    // Prepended so the header is set before the framework's handler can write the response.
    server.prependListener('request', (req: IncomingMessage, res: ServerResponse) => {
      const s = t.sockets.get(req.socket);
      if (s) s.active++;
      const path = (req.url ?? '/').split('?')[0] ?? '/';
      t.requests.set(res, { method: req.method ?? 'GET', path, startedAt: Date.now() });
      if (draining) markClose(res);
      res.once('close', () => {
        t.requests.delete(res);
        if (s) {
          s.active = Math.max(0, s.active - 1);
          if (s.active === 0) s.idleSince = Date.now();
        }
      });
    });
  }

  /** Stop accepting, then wait until every socket of every server is gone. */
  async function drainServers(): Promise<void> {
    await Promise.all(
      servers.map(async (t) => {
        const closed = new Promise<void>((resolve) => {
          if (!t.server.listening) return resolve();
          // net.Server#close, not http.Server#close: the latter also drops every idle keep-alive
          // socket at once, which resets a request a client is writing at that very moment.
          NetServer.prototype.close.call(t.server, () => resolve());
        });
        while (t.sockets.size > 0 && !forced) {
          const now = Date.now();
          for (const [socket, s] of t.sockets) {
            if (s.active === 0 && now - s.idleSince >= idleCloseMs) socket.destroy();
          }
          await sleep(Math.min(50, idleCloseMs));
        }
        await closed;
      }),
    );
  }

  async function run(reason: string): Promise<number> {
    startedAt = Date.now();
    options.health?.setDraining();
    log.info(
      {
        reason,
        drain_delay_ms: options.drainDelayMs,
        timeout_ms: options.timeoutMs,
        in_flight: inFlight().length,
      },
      'shutdown started',
    );

    let deadlineTimer: NodeJS.Timeout | undefined;
    const deadline = new Promise<'deadline'>((resolve) => {
      deadlineTimer = setTimeout(() => resolve('deadline'), options.timeoutMs);
    });
    const work = (async () => {
      await sleep(options.drainDelayMs);
      closing = 'http';
      // From here on no connection is reused. Not earlier: during the drain delay clients keep
      // their connections, so none is waiting in the accept queue when the listener closes (the
      // kernel resets those).
      draining = true;
      for (const t of servers) for (const res of t.requests.keys()) markClose(res);
      await drainServers();
      options.health?.stop();
      for (const r of [...resources].reverse()) {
        closing = r.name;
        try {
          await r.close();
        } catch (err) {
          log.warn({ resource: r.name, err }, `closing ${r.name} failed`);
        }
      }
      closing = undefined;
      return 'done' as const;
    })();

    const outcome = await Promise.race([work, deadline]);
    clearTimeout(deadlineTimer);
    const elapsed = Date.now() - startedAt;
    if (outcome === 'done') {
      log.info({ reason, elapsed_ms: elapsed }, 'shutdown complete');
      return finish(0);
    }
    forced = true;
    const running = inFlight();
    // Exiting anyway: drop what is left so an exit stub (tests) does not leave sockets open.
    for (const t of servers) for (const socket of t.sockets.keys()) socket.destroy();
    const stillRunning = [
      ...running.map((r) => `${r.method} ${r.path} (${r.age_ms} ms)`),
      ...(closing !== undefined && closing !== 'http' ? [`closing ${closing}`] : []),
    ];
    log.error(
      {
        reason,
        elapsed_ms: elapsed,
        timeout_ms: options.timeoutMs,
        in_flight: running,
        closing: closing === 'http' ? undefined : closing,
      },
      `shutdown deadline of ${options.timeoutMs} ms exceeded; forcing exit; still running: ${
        stillRunning.length > 0 ? stillRunning.join(', ') : 'nothing tracked'
      }`,
    );
    return finish(1);
  }

  const controller: Shutdown = {
    register(name, close) {
      resources.push({ name, close });
    },
    trackServer,
    listen(signals = ['SIGTERM', 'SIGINT']) {
      const handler = (signal: NodeJS.Signals) => {
        if (current !== undefined) {
          const running = inFlight();
          log.error(
            { signal, in_flight: running, closing },
            `second ${signal} during shutdown; forcing exit; still running: ${
              running.map((r) => `${r.method} ${r.path} (${r.age_ms} ms)`).join(', ') ||
              closing ||
              'nothing tracked'
            }`,
          );
          finish(1);
          return;
        }
        void controller.shutdown(signal);
      };
      for (const s of signals) process.on(s, handler);
      return () => {
        for (const s of signals) process.off(s, handler);
      };
    },
    shutdown(reason) {
      current ??= run(reason);
      return current;
    },
    get shuttingDown() {
      return current !== undefined;
    },
    inFlight,
  };
  return controller;
}
