/**
 * Keep-alive connections to replicas. Each socket gets its listeners once, at creation, and
 * dispatches to whichever client connection currently owns it — no per-request closures.
 */
import { connect, type Socket } from 'node:net';
import type { BackendState } from './backends.js';

/** What an upstream socket reports to the exchange that owns it. */
export interface UpstreamOwner {
  /**
   * Bytes from the replica. `data` is a view of a read buffer shared by the balancer's upstream
   * sockets: valid only during this call, so anything kept or written later must be copied.
   */
  onUpstreamData(up: UpstreamConn, data: Buffer): void;
  /** The socket closed or ended; `err` is set for errors (refused, reset...). */
  onUpstreamEnd(up: UpstreamConn, err: Error | null): void;
  onUpstreamDrain(up: UpstreamConn): void;
}

/**
 * One TCP connection to a backend.
 *
 * @example
 * const up = new UpstreamConn(backend);
 * up.owner = exchange;
 * up.sock.write(head, 'latin1');
 */
export class UpstreamConn {
  readonly sock: Socket;
  readonly backend: BackendState;
  owner: UpstreamOwner | null = null;
  /** Exchanges completed on this socket; 0 means a fresh connection. */
  used = 0;
  connected = false;
  dead = false;
  /** Sweep-clock time it went back to the pool. */
  idleSince = 0;
  private err: Error | null = null;

  constructor(backend: BackendState, readBuffer: Buffer) {
    this.backend = backend;
    // `onread` reads into one reused buffer and calls us directly: no per-read allocation and no
    // Readable-stream bookkeeping, which was a visible share of the per-request CPU.
    const sock = connect({
      host: backend.host,
      port: backend.port,
      noDelay: true,
      onread: {
        buffer: readBuffer,
        callback: (n: number, buf: Uint8Array): boolean => {
          const o = this.owner;
          if (o) o.onUpstreamData(this, (buf as Buffer).subarray(0, n));
          else this.destroy(); // bytes on an idle socket: the replica is confused; never reuse it
          return true;
        },
      },
    });
    this.sock = sock;
    sock.on('connect', () => {
      this.connected = true;
    });
    sock.on('drain', () => this.owner?.onUpstreamDrain(this));
    sock.on('error', (e: Error) => {
      this.err = e;
    });
    sock.on('end', () => this.finish());
    sock.on('close', () => this.finish());
  }

  private finish(): void {
    if (this.dead && !this.owner) return;
    this.dead = true;
    const o = this.owner;
    this.owner = null;
    if (!this.sock.destroyed) this.sock.destroy();
    if (o) o.onUpstreamEnd(this, this.err);
    else {
      const idle = this.backend.idle;
      const i = idle.indexOf(this);
      if (i >= 0) idle.splice(i, 1);
    }
  }

  destroy(): void {
    this.owner = null;
    this.dead = true;
    this.sock.destroy();
    const idle = this.backend.idle;
    const i = idle.indexOf(this);
    if (i >= 0) idle.splice(i, 1);
  }
}

/** Pool policy shared by all backends of one balancer. */
export interface PoolOptions {
  /** Idle sockets kept per backend. */
  maxIdle: number;
  /** Close an idle socket after this long (below Node's 5 s server keep-alive default). */
  idleTimeoutMs: number;
  /** No response head within this long -> 504. */
  responseTimeoutMs: number;
}

/** Take an idle socket (most recently used first) or open a new one. */
export function acquire(b: BackendState, owner: UpstreamOwner, readBuffer: Buffer): UpstreamConn {
  const idle = b.idle;
  let up = idle.pop();
  while (up?.dead) up = idle.pop();
  if (up === undefined) up = new UpstreamConn(b, readBuffer);
  up.owner = owner;
  return up;
}

/** Return a socket after a complete exchange, or close it when it cannot carry another. */
export function release(up: UpstreamConn, reusable: boolean, opts: PoolOptions, now: number): void {
  up.owner = null;
  up.used++;
  const b = up.backend;
  if (
    !reusable ||
    up.dead ||
    b.removed ||
    b.state === 'draining' ||
    b.state === 'ejected' ||
    b.idle.length >= opts.maxIdle
  ) {
    up.destroy();
    return;
  }
  if (up.sock.isPaused()) up.sock.resume();
  up.idleSince = now;
  b.idle.push(up);
}

/** Close idle sockets older than the idle timeout (called from the sweep timer). */
export function expireIdle(b: BackendState, now: number, opts: PoolOptions): void {
  const idle = b.idle;
  for (let i = idle.length - 1; i >= 0; i--) {
    const up = idle[i]!;
    if (now - up.idleSince > opts.idleTimeoutMs) up.destroy();
  }
}

/** Close every idle socket of a backend (drain, removal, ejection, shutdown). */
export function closeIdle(b: BackendState): void {
  for (const up of b.idle.splice(0)) up.destroy();
}
