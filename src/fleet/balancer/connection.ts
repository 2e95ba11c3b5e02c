/**
 * One client connection: reads request heads, routes each request to a backend, streams the body
 * up and the response down with backpressure, retries safe requests once on a connection failure
 * before any response byte, and hands upgrades to the tunnel.
 *
 * Requests on a keep-alive connection are handled one at a time; pipelined bytes wait (with the
 * socket paused) until the current response is complete, which keeps responses in order.
 */
import type { Socket } from 'node:net';
import type { BackendState } from './backends.js';
import type { BalancerCore } from './core.js';
import { BodyFramer, Framing } from './framing.js';
import { type BalancerProblem, problemBytes } from './problems.js';
import { isRepeatable, parseRequestHead, RequestHead } from './request-head.js';
import { parseResponseHead, ResponseHead } from './response-head.js';
import { openTunnel } from './tunnel.js';
import { acquire, release, type UpstreamConn, type UpstreamOwner } from './upstream.js';

const HEAD_END = Buffer.from('\r\n\r\n');

enum Phase {
  /** Waiting for (more of) a request head. */
  Head = 0,
  /** Streaming the request body upstream. */
  Body = 1,
  /** Request fully sent; waiting for / streaming the response. */
  Await = 2,
  /** Handed to a tunnel (upgrade). */
  Tunnel = 3,
  Closed = 4,
}

// Below this, head + body are copied into one buffer and written once: cheaper than cork/writev.
const COALESCE_BYTES = 16 * 1024;

/** Write a latin1 head and `body[start, end)` with a single write when small. */
function writeHead(
  sock: Socket,
  head: string,
  body: Buffer,
  start: number,
  end: number,
  copy: boolean,
): boolean {
  const n = end - start;
  if (n <= 0) return sock.write(head, 'latin1');
  if (n <= COALESCE_BYTES) {
    const out = Buffer.allocUnsafe(head.length + n);
    out.write(head, 0, 'latin1');
    body.copy(out, head.length, start, end);
    return sock.write(out);
  }
  const part = start === 0 && end === body.length ? body : body.subarray(start, end);
  sock.cork();
  sock.write(head, 'latin1');
  const ok = sock.write(copy ? Buffer.from(part) : part);
  sock.uncork();
  return ok;
}

function clientAddress(sock: Socket): string {
  const a = sock.remoteAddress ?? '';
  return a.startsWith('::ffff:') ? a.slice(7) : a;
}

/**
 * Drives one accepted socket.
 *
 * @example
 * server.on('connection', (sock) => new ClientConnection(sock, core));
 */
export class ClientConnection implements UpstreamOwner {
  readonly sock: Socket;
  private readonly core: BalancerCore;
  private readonly ip: string;
  private phase: Phase = Phase.Head;
  private pending: Buffer | null = null;
  private readonly req = new RequestHead();
  private readonly res = new ResponseHead();
  private readonly reqBody = new BodyFramer();
  private readonly resBody = new BodyFramer();
  private backend: BackendState | null = null;
  private up: UpstreamConn | null = null;
  private resHead: Buffer | null = null;
  private resStarted = false;
  /** Body chunks kept for a possible retry; null when the request cannot be replayed. */
  private kept: Buffer[] | null = null;
  private keptBytes = 0;
  private retried = false;
  private setCookie = '';
  private waitUpDrain = false;
  private waitClientDrain = false;
  private clientEnded = false;
  /** A tunnel's upstream socket once upgraded, so close() can reach it. */
  tunnel: Socket | null = null;
  /** Coarse times (the core's sweep clock) for idle and response timeouts. */
  lastActive: number;
  sentAt = 0;

  constructor(sock: Socket, core: BalancerCore) {
    this.sock = sock;
    this.core = core;
    this.ip = clientAddress(sock);
    this.lastActive = core.now;
    sock.on('data', (d: Buffer) => this.onData(d));
    sock.on('drain', () => this.onClientDrain());
    sock.on('end', () => this.onClientEnd());
    sock.on('error', () => {});
    sock.on('close', () => this.onClientClose());
  }

  // ---- client side -------------------------------------------------------------------------

  private onData(d: Buffer): void {
    this.lastActive = this.core.now;
    switch (this.phase) {
      case Phase.Body:
        this.bodyData(d, 0);
        return;
      case Phase.Head:
        this.pending = this.pending === null ? d : Buffer.concat([this.pending, d]);
        this.processPending();
        return;
      case Phase.Await:
        // Pipelined request: hold it until the current response is done.
        this.pending = this.pending === null ? d : Buffer.concat([this.pending, d]);
        this.sock.pause();
        return;
      case Phase.Tunnel:
        if (this.tunnel && !this.tunnel.write(d)) this.sock.pause();
        return;
      default:
        return;
    }
  }

  private processPending(): void {
    while (this.phase === Phase.Head && this.pending !== null) {
      let buf = this.pending;
      // Tolerate the stray CRLF some clients send after a body (RFC 9112 2.2).
      let skip = 0;
      while (skip < buf.length && (buf[skip] === 13 || buf[skip] === 10)) skip++;
      if (skip === buf.length) {
        this.pending = null;
        return;
      }
      if (skip > 0) buf = buf.subarray(skip);
      const idx = buf.indexOf(HEAD_END);
      if (idx === -1) {
        this.pending = buf;
        if (buf.length > this.core.s.maxHeaderBytes) {
          this.reject(
            'header-too-large',
            'request head exceeds ' + this.core.s.maxHeaderBytes + ' bytes',
            true,
          );
        }
        return;
      }
      this.pending = null;
      this.startRequest(buf, idx);
    }
    if (this.phase === Phase.Head && this.clientEnded) this.sock.end();
  }

  private startRequest(buf: Buffer, idx: number): void {
    const core = this.core;
    const s = core.s;
    const req = parseRequestHead(this.req, buf.toString('latin1', 0, idx), this.ip, core.headCtx);
    const off = idx + 4;
    if (req.error) {
      this.reject(req.errorStatus === 501 ? 'not-implemented' : 'bad-request', req.error, true);
      return;
    }
    if (req.framing === Framing.Length && req.contentLength > s.maxBodyBytes) {
      this.reject('payload-too-large', 'request body exceeds ' + s.maxBodyBytes + ' bytes', true);
      return;
    }
    let backend: BackendState | null = null;
    this.setCookie = '';
    if (req.sticky) backend = core.backends.byCookie(req.sticky);
    if (backend === null) {
      backend = core.backends.pick(s.strategy, null);
      if (backend !== null && core.headCtx.stickyCookie) {
        this.setCookie =
          core.headCtx.stickyCookie + '=' + backend.cookieValue + '; Path=/; HttpOnly; SameSite=Lax';
      }
    }
    if (backend === null) {
      const hasBody = req.framing !== Framing.None;
      this.reject(
        'no-ready-replica',
        'no ready replica for service "' + s.service + '"',
        hasBody || req.close,
        1,
      );
      if (!hasBody && off < buf.length) this.pending = buf.subarray(off);
      return;
    }
    if (req.upgrade) {
      this.phase = Phase.Tunnel;
      openTunnel(this, core, backend, req.upstream, off < buf.length ? buf.subarray(off) : null);
      return;
    }
    this.reqBody.reset(req.framing, req.contentLength);
    this.kept = isRepeatable(req) ? [] : null;
    this.keptBytes = 0;
    this.retried = false;
    this.phase = this.reqBody.done ? Phase.Await : Phase.Body;
    this.dispatch(backend, buf, off);
  }

  /**
   * Send the head to `b`, then either the body bytes that arrived with it (`buf` from `off`, first
   * attempt) or the body kept for replay (retry, `buf` null).
   */
  private dispatch(b: BackendState, buf: Buffer | null, off: number): void {
    const core = this.core;
    this.backend = b;
    b.inFlight++;
    b.requests++;
    this.resStarted = false;
    this.resHead = null;
    this.sentAt = core.now;
    const up = acquire(b, this, core.readBuffer);
    this.up = up;
    const head = this.req.upstream;
    if (buf === null) {
      const kept = this.kept;
      if (kept === null || kept.length === 0) {
        up.sock.write(head, 'latin1');
        return;
      }
      up.sock.cork();
      up.sock.write(head, 'latin1');
      for (const c of kept) up.sock.write(c);
      up.sock.uncork();
      return;
    }
    if (off >= buf.length) {
      up.sock.write(head, 'latin1');
      return;
    }
    if (this.phase !== Phase.Body) {
      up.sock.write(head, 'latin1');
      this.pending = buf.subarray(off);
      this.sock.pause();
      return;
    }
    // Common small-POST case: the whole body came with the head; frame it and send both at once.
    const n = this.reqBody.consume(buf, off);
    if (n < 0 || this.reqBody.payload > core.s.maxBodyBytes) {
      up.sock.write(head, 'latin1');
      this.bodyCheck(n);
      return;
    }
    if (this.kept !== null) this.keep(buf.subarray(off, off + n));
    if (!writeHead(up.sock, head, buf, off, off + n, false)) {
      this.waitUpDrain = true;
      this.sock.pause();
    }
    this.afterBodyPart(buf, off, n);
  }

  /** Retain a body part for a possible replay; past the retry limit the request is not replayable. */
  private keep(part: Buffer): void {
    this.keptBytes += part.length;
    if (this.keptBytes <= this.core.s.retryBodyBytes) this.kept!.push(part);
    else this.kept = null;
  }

  private bodyCheck(n: number): boolean {
    if (n < 0) {
      this.abortExchange('bad-request', 'malformed chunked request body');
      return false;
    }
    if (this.reqBody.payload > this.core.s.maxBodyBytes) {
      this.abortExchange('payload-too-large', 'request body exceeds ' + this.core.s.maxBodyBytes + ' bytes');
      return false;
    }
    return true;
  }

  private afterBodyPart(buf: Buffer, off: number, n: number): void {
    if (!this.reqBody.done) return;
    this.phase = Phase.Await;
    this.sentAt = this.core.now;
    if (off + n < buf.length) {
      this.pending = buf.subarray(off + n);
      this.sock.pause();
    }
  }

  private bodyData(buf: Buffer, off: number): void {
    const rb = this.reqBody;
    const n = rb.consume(buf, off);
    if (!this.bodyCheck(n)) return;
    if (n > 0) {
      const part = off === 0 && n === buf.length ? buf : buf.subarray(off, off + n);
      if (this.kept !== null) this.keep(part);
      const up = this.up;
      if (up !== null && !up.sock.write(part)) {
        this.waitUpDrain = true;
        this.sock.pause();
      }
    }
    this.afterBodyPart(buf, off, n);
  }

  private onClientDrain(): void {
    if (this.waitClientDrain) {
      this.waitClientDrain = false;
      this.up?.sock.resume();
    }
    if (this.phase === Phase.Tunnel) this.tunnel?.resume();
  }

  private onClientEnd(): void {
    this.clientEnded = true;
    if (this.phase === Phase.Head) this.sock.end();
    else if (this.phase === Phase.Tunnel) {
      // Upgraded protocols (WebSocket) have their own close handshake; a TCP half-close ends both.
      this.tunnel?.end();
      this.sock.end();
    } else if (this.phase === Phase.Body || this.phase === Phase.Await) {
      // EOF while a request is open means the client gave up (as common proxies read it): stop
      // the replica's work instead of finishing a response nobody will read.
      this.breakBoth();
    }
  }

  private onClientClose(): void {
    const wasOpen = this.phase !== Phase.Closed;
    this.phase = Phase.Closed;
    this.pending = null;
    this.kept = null;
    const up = this.up;
    const b = this.backend;
    this.up = null;
    this.backend = null;
    // The client is gone: abandon the upstream exchange rather than let the replica finish for nobody.
    if (up !== null) up.destroy();
    if (b !== null && wasOpen) this.core.done(b);
    this.tunnel?.destroy();
    this.core.forget(this);
  }

  // ---- upstream side -----------------------------------------------------------------------

  onUpstreamData(up: UpstreamConn, d: Buffer): void {
    if (up !== this.up) return;
    if (!this.resStarted || this.res.status < 200) this.headData(d);
    else this.resData(d, 0);
  }

  private headData(d: Buffer): void {
    // `d` is a view of the shared read buffer; a concatenation is our own copy.
    const owned = this.resHead !== null;
    let buf = owned ? Buffer.concat([this.resHead!, d]) : d;
    for (;;) {
      const idx = buf.indexOf(HEAD_END);
      if (idx === -1) {
        if (buf.length > this.core.s.maxHeaderBytes) {
          this.failUpstream('bad-gateway', 'response head too large');
          return;
        }
        this.resHead = owned ? buf : Buffer.from(buf);
        return;
      }
      this.resHead = null;
      const req = this.req;
      const res = parseResponseHead(
        this.res,
        buf.toString('latin1', 0, idx),
        req.method === 'HEAD',
        req.close || this.clientEnded,
        this.setCookie,
      );
      if (res.error) {
        this.failUpstream('bad-gateway', 'replica sent ' + res.error);
        return;
      }
      this.resStarted = true;
      this.kept = null;
      const off = idx + 4;
      if (res.status < 200) {
        // Interim response (100 Continue, 103 Early Hints): pass through as is, keep reading.
        this.sock.write(Buffer.from(buf.subarray(0, off)));
        if (off >= buf.length) return;
        buf = buf.subarray(off);
        continue;
      }
      const rb = this.resBody;
      rb.reset(res.framing, res.contentLength);
      const n = off < buf.length ? rb.consume(buf, off) : 0;
      if (n < 0) {
        this.breakBoth();
        return;
      }
      if (!writeHead(this.sock, res.client, buf, off, off + n, true)) {
        this.waitClientDrain = true;
        this.up?.sock.pause();
      }
      if (rb.done) this.completeResponse(off + n < buf.length);
      return;
    }
  }

  private resData(buf: Buffer, off: number): void {
    const rb = this.resBody;
    const n = rb.consume(buf, off);
    if (n < 0) {
      this.breakBoth();
      return;
    }
    if (n > 0) {
      // `buf` is the shared upstream read buffer: the socket may keep what it could not send yet.
      const part = Buffer.from(buf.subarray(off, off + n));
      if (!this.sock.write(part)) {
        this.waitClientDrain = true;
        this.up?.sock.pause();
      }
    }
    if (rb.done) this.completeResponse(off + n < buf.length);
  }

  private completeResponse(extraBytes: boolean): void {
    const up = this.up;
    const b = this.backend;
    this.up = null;
    this.backend = null;
    const bodySent = this.reqBody.done;
    if (up !== null) {
      release(up, this.res.reusable && !extraBytes && bodySent, this.core.s.pool, this.core.now);
    }
    if (b !== null) this.core.done(b);
    this.waitClientDrain = false;
    if (!bodySent) {
      // The replica answered before the whole body arrived; the rest cannot be framed reliably
      // on this connection, so end it once the response is flushed.
      this.phase = Phase.Closed;
      this.sock.end();
      return;
    }
    this.afterResponse(this.res.framing === Framing.UntilClose);
  }

  private afterResponse(mustClose: boolean): void {
    if (mustClose || this.req.close) {
      this.phase = Phase.Closed;
      this.sock.end();
      return;
    }
    this.phase = Phase.Head;
    if (this.sock.isPaused()) this.sock.resume();
    if (this.pending !== null || this.clientEnded) this.processPending();
  }

  onUpstreamDrain(up: UpstreamConn): void {
    if (up === this.up && this.waitUpDrain) {
      this.waitUpDrain = false;
      this.sock.resume();
    }
  }

  onUpstreamTimeout(up: UpstreamConn): void {
    if (up !== this.up) return;
    if (!this.resStarted) this.failUpstream('gateway-timeout', 'replica sent no response in time');
  }

  onUpstreamEnd(up: UpstreamConn, err: Error | null): void {
    if (up !== this.up) return;
    if (this.resStarted) {
      if (this.res.status >= 200 && this.resBody.mode === Framing.UntilClose) {
        this.up = null;
        const b = this.backend;
        this.backend = null;
        if (b !== null) this.core.done(b);
        this.afterResponse(true);
      } else {
        // Truncated response: the client must see a broken connection, not a short body.
        this.breakBoth();
      }
      return;
    }
    const b = this.backend!;
    const fresh = up.used === 0;
    b.failures++;
    const reason = err ? ((err as NodeJS.ErrnoException).code ?? err.message) : 'connection closed';
    // A fresh connection that fails means the replica is down; a reused one may just have
    // been closed by the replica's keep-alive timer.
    if (fresh) this.core.eject(b, reason);
    this.up = null;
    this.backend = null;
    this.core.done(b);
    if (this.kept !== null && !this.retried) {
      const other = this.core.backends.pick(this.core.s.strategy, b);
      if (other !== null) {
        this.retried = true;
        this.core.s.logger.debug(
          { service: this.core.s.service, from: b.id, to: other.id, requestId: this.req.requestId, reason },
          'retrying request on another replica',
        );
        this.dispatch(other, null, 0);
        if (this.waitUpDrain) {
          this.waitUpDrain = false;
          this.sock.resume();
        }
        return;
      }
    }
    this.respondError('bad-gateway', 'replica ' + b.id + ' failed before responding: ' + reason);
  }

  // ---- failures ----------------------------------------------------------------------------

  /** Drop the current upstream socket (never reused) and end the backend's in-flight exchange. */
  private detach(): void {
    const up = this.up;
    const b = this.backend;
    this.up = null;
    this.backend = null;
    up?.destroy();
    if (b !== null) this.core.done(b);
  }

  /** Give up on the current upstream (no response byte sent yet) and answer with a problem. */
  private failUpstream(kind: BalancerProblem, detail: string): void {
    if (this.backend !== null) this.backend.failures++;
    this.detach();
    if (this.resStarted) {
      this.breakBoth();
      return;
    }
    this.respondError(kind, detail);
  }

  /** Answer the current request with a problem; close unless the request was fully read. */
  private respondError(kind: BalancerProblem, detail: string): void {
    const close = this.phase !== Phase.Await || this.req.close;
    this.sock.write(
      problemBytes(kind, detail, { requestId: this.req.requestId, close, service: this.core.s.service }),
    );
    this.kept = null;
    if (close) {
      this.phase = Phase.Closed;
      this.sock.end();
    } else {
      this.afterResponse(false);
    }
  }

  /** Abort the exchange while the request body is streaming (too large, malformed). */
  private abortExchange(kind: BalancerProblem, detail: string): void {
    this.detach();
    if (this.resStarted) {
      this.breakBoth();
      return;
    }
    this.reject(kind, detail, true);
  }

  /** Answer without contacting a replica. */
  private reject(kind: BalancerProblem, detail: string, close: boolean, retryAfter?: number): void {
    const opts: { requestId?: string; close: boolean; retryAfter?: number; service: string } = {
      close,
      service: this.core.s.service,
    };
    if (this.req.requestId) opts.requestId = this.req.requestId;
    if (retryAfter !== undefined) opts.retryAfter = retryAfter;
    this.sock.write(problemBytes(kind, detail, opts));
    if (close) {
      this.phase = Phase.Closed;
      this.pending = null;
      this.sock.end();
    }
  }

  private breakBoth(): void {
    this.detach();
    this.phase = Phase.Closed;
    this.sock.destroy();
  }

  /** Called by the core's sweep timer with its coarse clock. */
  checkTimeouts(now: number): void {
    const s = this.core.s;
    switch (this.phase) {
      case Phase.Head:
        if (now - this.lastActive > s.clientIdleTimeoutMs) this.sock.destroy();
        return;
      case Phase.Body:
        // A client that stops sending mid-body holds a replica connection: cut it loose.
        if (now - this.lastActive > s.clientIdleTimeoutMs) this.breakBoth();
        return;
      case Phase.Await:
        if (this.up !== null && !this.resStarted && now - this.sentAt > s.pool.responseTimeoutMs) {
          this.onUpstreamTimeout(this.up);
        }
        return;
      default:
        return;
    }
  }

  /** Stop at once (balancer shutdown). */
  destroy(): void {
    this.sock.destroy();
  }
}
