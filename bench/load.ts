// A lean closed-loop HTTP/1.1 load generator for the server benchmarks: N keep-alive connections,
// each sending the next GET as soon as the previous response is complete. It parses only what it
// needs (status line, Content-Length, end of body), so on a 2-core machine it leaves the server
// more CPU than a general-purpose client would, and the server, not the client, sets the pace.
// Responses must carry Content-Length (no chunked bodies); anything else counts as an error.
import { connect, type Socket } from 'node:net';

export interface LoadResult {
  /** Responses per second over the run. */
  rps: number;
  total: number;
  /** Responses received in all: `total` plus the request each connection finished after the run. */
  answered: number;
  /** Non-2xx responses, malformed responses and socket errors. */
  errors: number;
  p50_ms: number;
  p99_ms: number;
  /** This process's CPU use over the run, as a share of one core. */
  client_cpu: number;
}

export interface LoadOptions {
  port: number;
  host?: string;
  path?: string;
  connections?: number;
  seconds: number;
}

const HEAD_END = Buffer.from('\r\n\r\n');

/**
 * Run closed-loop load against `http://host:port/path` for `seconds`.
 *
 * @example
 * const r = await runLoad({ port: 3000, connections: 50, seconds: 5 });
 * console.log(r.rps, r.p99_ms);
 */
export async function runLoad(opts: LoadOptions): Promise<LoadResult> {
  const host = opts.host ?? '127.0.0.1';
  const request = Buffer.from(
    `GET ${opts.path ?? '/'} HTTP/1.1\r\nHost: ${host}:${opts.port}\r\nUser-Agent: shoal-bench\r\n\r\n`,
  );
  const connections = opts.connections ?? 50;
  let total = 0;
  let errors = 0;
  let running = true;
  // Latency samples in microseconds; bounded so a long run cannot grow without limit.
  const samples = new Float64Array(1 << 20);
  let sampleCount = 0;
  const cpu0 = process.cpuUsage();
  const t0 = performance.now();

  const sockets: Socket[] = [];
  const done: Promise<void>[] = [];
  for (let i = 0; i < connections; i++) {
    const socket = connect({ port: opts.port, host, noDelay: true });
    sockets.push(socket);
    done.push(
      new Promise<void>((resolve) => {
        let pending: Buffer | undefined;
        let sentAt = 0;
        const send = () => {
          sentAt = performance.now();
          socket.write(request);
        };
        socket.on('connect', send);
        socket.on('data', (chunk: Buffer) => {
          let buf = pending ? Buffer.concat([pending, chunk]) : chunk;
          for (;;) {
            const headEnd = buf.indexOf(HEAD_END);
            if (headEnd === -1) break;
            const head = buf.toString('latin1', 0, headEnd);
            const m = /\r\ncontent-length:\s*(\d+)/i.exec(head);
            if (!m) {
              errors++;
              socket.destroy();
              return;
            }
            const end = headEnd + 4 + Number(m[1]);
            if (buf.length < end) break;
            const status = head.charCodeAt(9);
            if (status !== 50) errors++;
            total++;
            if (sampleCount < samples.length) samples[sampleCount++] = (performance.now() - sentAt) * 1000;
            buf = buf.subarray(end);
            if (running) send();
            else {
              socket.end();
              return;
            }
          }
          pending = buf.length > 0 ? Buffer.from(buf) : undefined;
        });
        socket.on('error', () => {
          errors++;
        });
        socket.on('close', () => resolve());
      }),
    );
  }
  await new Promise((r) => setTimeout(r, opts.seconds * 1000));
  running = false;
  const elapsed = (performance.now() - t0) / 1000;
  const cpu = process.cpuUsage(cpu0);
  const counted = total;
  // Connections finish their in-flight request, then close; do not wait forever on a stuck one.
  await Promise.race([Promise.all(done), new Promise((r) => setTimeout(r, 2000))]);
  for (const s of sockets) s.destroy();
  const sorted = samples.subarray(0, sampleCount).sort();
  const pct = (p: number) =>
    sorted.length ? (sorted[Math.min(sorted.length - 1, Math.floor(p * sorted.length))] as number) / 1000 : 0;
  return {
    rps: counted / elapsed,
    total: counted,
    answered: total,
    errors,
    p50_ms: Math.round(pct(0.5) * 1000) / 1000,
    p99_ms: Math.round(pct(0.99) * 1000) / 1000,
    client_cpu: Math.round(((cpu.user + cpu.system) / 1e6 / elapsed) * 100) / 100,
  };
}
