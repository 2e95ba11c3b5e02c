// Cost of observing requests: requests/s of a Hono hello-world on @hono/node-server with Shoal's
// observing (request id, one JSON log line per request to a real file, request metrics) versus the
// same app without it, same run.
//
//   observed    what serve() builds by default: createObservedServer (observeAt: 'server')
//   middleware  the observe() middleware mounted with app.use (observeAt: 'middleware')
//   bare        the app alone
//   echo        the app alone, with only the X-Request-Id each observed response must carry (minted
//               per request, added in writeHead as createObservedServer does): the share of the
//               cost that the echoed header sets by itself, with no logging and no metrics
//
// Each server runs in its own child process; this process only generates load (bench/load.ts, a
// lean keep-alive client, so the server and not the client sets the pace on a 2-core machine).
// Identical server processes differ by several percent depending on how V8 happened to lay out
// their hot objects, so every round starts FRESH processes for every variant, warms them up (3 s
// each: measured second by second from a fresh start, every variant still ran at 0.75-0.95 of its
// steady rate in its second second, so a 1 s warm-up left part of the measurement cold), then
// measures them in turn: each variant's 3 s are cut into slices (default 3 of 1 s) run one variant
// after the other in a rotating order, so a slow spell of the shared machine falls on all of them.
// observed_vs_bare is the median over rounds of the per-round ratio, which cancels the machine's
// drift. The log file is counted at the end: one line per observed request.
//
//   npm run bench:overhead                      10 rounds x 3 s (3 slices) after 3 s warm-up, 50 connections
//   BENCH_ROUNDS=5 BENCH_SECONDS=2 BENCH_SLICES=1 BENCH_WARMUP=1 npm run bench:overhead
//   BENCH_LOG_THREAD=0 npm run bench:overhead   the log destination without its writer thread
//
// One JSON line per round, then a last line with the medians and {"observed_vs_bare": ratio}.
import { type ChildProcess, spawn } from 'node:child_process';
import { once } from 'node:events';
import { createReadStream, rmSync } from 'node:fs';
import { createServer, type Server, ServerResponse } from 'node:http';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createInterface } from 'node:readline';
import { fileURLToPath } from 'node:url';
import { median } from './common.js';
import { runLoad } from './load.js';
import { shipped } from './shipped.js';

const VARIANTS = ['bare', 'echo', 'observed', 'middleware'] as const;
type Variant = (typeof VARIANTS)[number];

async function serveVariant(variant: Variant): Promise<void> {
  const { getRequestListener } = await import('@hono/node-server');
  const { Hono } = await import('hono');
  const app = new Hono();
  let server: Server;
  if (variant === 'bare') {
    app.get('/', (c) => c.text('Hello, world!'));
    server = createServer(getRequestListener(app.fetch));
  } else if (variant === 'echo') {
    const { createRequestIdMinter } =
      await shipped<typeof import('../src/observe/request-id.js')>('observe/request-id.js');
    const mint = createRequestIdMinter();
    const nodeWriteHead = ServerResponse.prototype.writeHead as (
      this: ServerResponse,
      status: number,
      headers?: unknown,
    ) => ServerResponse;
    // Built as createObservedServer builds its response type (a plain constructor assigning its
    // own field; see the note there), so the two differ only in what the observer adds.
    type Echo = ServerResponse & { requestId: string };
    const nodeResponse = ServerResponse as unknown as (
      this: ServerResponse,
      req: unknown,
      o?: unknown,
    ) => void;
    function EchoResponse(this: Echo, req: unknown, options?: unknown): void {
      nodeResponse.call(this, req, options);
      this.requestId = mint();
    }
    Object.setPrototypeOf(EchoResponse, ServerResponse);
    const proto = Object.create(ServerResponse.prototype) as Echo;
    EchoResponse.prototype = proto;
    // The app's responses hand writeHead a header record; the id goes in front of a copy of it.
    proto.writeHead = function writeHead(this: Echo, status: number, given?: unknown) {
      const out: Record<string, unknown> = { 'X-Request-Id': this.requestId };
      const own = given as Record<string, unknown> | undefined;
      for (const key in own) out[key] = own[key];
      return nodeWriteHead.call(this, status, out);
    } as Echo['writeHead'];
    app.get('/', (c) => c.text('Hello, world!'));
    server = createServer(
      { ServerResponse: EchoResponse as unknown as typeof ServerResponse },
      getRequestListener(app.fetch),
    );
  } else {
    const { createLogDestination, createLogger } =
      await shipped<typeof import('../src/observe/log.js')>('observe/log.js');
    const { createMetrics } = await shipped<typeof import('../src/observe/metrics.js')>('observe/metrics.js');
    const { createObservedServer, metricsHandler, observe } =
      await shipped<typeof import('../src/adapters/hono/observe.js')>('adapters/hono/observe.js');
    const logger = createLogger({
      service: 'bench',
      instanceId: 'bench-1',
      // Batched writes from a writer thread: the documented setting for busy services.
      destination: createLogDestination({
        path: process.env.SHOAL_BENCH_LOG_PATH as string,
        thread: process.env.BENCH_LOG_THREAD !== '0',
      }),
    });
    const metrics = createMetrics({ service: 'bench', instanceId: 'bench-1' });
    metrics.startEventLoopMonitor();
    app.get('/metrics', metricsHandler(metrics));
    // Default options, as instrument() passes them (no X-Instance-Id unless asked for).
    if (variant === 'middleware') {
      app.use(observe({ logger, metrics, instanceId: 'bench-1' }));
      app.get('/', (c) => c.text('Hello, world!'));
      server = createServer(getRequestListener(app.fetch));
    } else {
      app.get('/', (c) => c.text('Hello, world!'));
      server = createObservedServer(app, {
        logger,
        metrics,
        instanceId: 'bench-1',
        unobservedRoutes: ['/metrics'],
      });
    }
    metrics.trackServer(server);
  }
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  const addr = server.address();
  process.send?.({ port: typeof addr === 'object' && addr ? addr.port : 0 });
  process.on('message', (m) => {
    if (m === 'stop') process.exit(0);
    // Server CPU per request is reported next to requests/s: it shows where the time went.
    if (m === 'cpu') {
      const u = process.cpuUsage();
      process.send?.({ user: u.user, system: u.system });
    }
  });
}

async function startChild(variant: Variant, file: string): Promise<{ child: ChildProcess; port: number }> {
  const flags = (process.env.BENCH_NODE_FLAGS ?? '').split(' ').filter(Boolean);
  const child = spawn(
    process.execPath,
    [...flags, '--import', 'tsx', fileURLToPath(import.meta.url), '--serve', variant],
    {
      stdio: ['ignore', 'inherit', 'inherit', 'ipc'],
      env: { ...process.env, NODE_ENV: 'production', SHOAL_BENCH_LOG_PATH: file },
    },
  );
  const [msg] = (await once(child, 'message')) as [{ port: number }];
  return { child, port: msg.port };
}

async function stopChild(child: ChildProcess): Promise<void> {
  if (child.exitCode !== null) return;
  const exited = once(child, 'exit');
  child.send('stop');
  const timer = setTimeout(() => child.kill('SIGKILL'), 5000);
  await exited;
  clearTimeout(timer);
}

async function serverCpuUs(child: ChildProcess): Promise<{ user: number; system: number }> {
  const reply = once(child, 'message') as Promise<[{ user: number; system: number }]>;
  child.send('cpu');
  return (await reply)[0];
}

/** What a variant's slices add up to within one round. */
const sliceTotals = () => ({
  total: 0,
  secs: 0,
  user: 0,
  system: 0,
  errors: 0,
  p50: [] as number[],
  p99: [] as number[],
  clientCpu: [] as number[],
});

const r3 = (x: number) => Math.round(x * 1000) / 1000;
const r1 = (x: number) => Math.round(x * 10) / 10;

async function main(): Promise<void> {
  const rounds = Number(process.env.BENCH_ROUNDS ?? 10);
  const seconds = Number(process.env.BENCH_SECONDS ?? 3);
  const connections = Number(process.env.BENCH_CONNECTIONS ?? 50);
  const slices = Math.max(1, Number(process.env.BENCH_SLICES ?? 3));
  const warmup = Number(process.env.BENCH_WARMUP ?? 3);
  const file = process.env.BENCH_LOG_FILE ?? join(tmpdir(), `shoal-bench-overhead-${process.pid}.ndjson`);
  // A caller-given path is only appended to (it may be /dev/null or a file worth keeping).
  if (!process.env.BENCH_LOG_FILE) rmSync(file, { force: true });
  let loggedRequests = 0;
  const rps: Record<Variant, number[]> = { bare: [], echo: [], observed: [], middleware: [] };
  const cpu: Record<Variant, number[]> = { bare: [], echo: [], observed: [], middleware: [] };
  const ratios: Record<'echo' | 'observed' | 'middleware', number[]> = {
    echo: [],
    observed: [],
    middleware: [],
  };
  let errors = 0;

  for (let round = 1; round <= rounds; round++) {
    const servers = await Promise.all(VARIANTS.map((v) => startChild(v, file)));
    try {
      const byVariant = Object.fromEntries(VARIANTS.map((v, i) => [v, servers[i]])) as Record<
        Variant,
        { child: ChildProcess; port: number }
      >;
      // Warm-up: JIT, heap sizing, connection setup. These requests are logged too (counted for
      // the file check).
      for (const v of VARIANTS) {
        const w = await runLoad({ port: byVariant[v].port, connections, seconds: warmup });
        if (v === 'observed' || v === 'middleware') loggedRequests += w.answered;
      }
      // Each variant's time is cut into slices, run in turn (a rotating order, so no variant always
      // runs first or right after a given other one): a slow spell of the machine then falls on
      // every variant alike instead of on whichever one happened to be running.
      const acc = Object.fromEntries(VARIANTS.map((v) => [v, sliceTotals()])) as Record<
        Variant,
        ReturnType<typeof sliceTotals>
      >;
      for (let slice = 0; slice < slices; slice++) {
        const shift = round + slice;
        const order = VARIANTS.map((_, i) => VARIANTS[(i + shift) % VARIANTS.length] as Variant);
        for (const v of order) {
          const { child, port } = byVariant[v];
          const before = await serverCpuUs(child);
          const r = await runLoad({ port, connections, seconds: seconds / slices });
          const after = await serverCpuUs(child);
          const a = acc[v];
          a.total += r.total;
          a.secs += r.rps > 0 ? r.total / r.rps : seconds / slices;
          a.user += after.user - before.user;
          a.system += after.system - before.system;
          a.errors += r.errors;
          a.p50.push(r.p50_ms);
          a.p99.push(r.p99_ms);
          a.clientCpu.push(r.client_cpu);
          if (v === 'observed' || v === 'middleware') loggedRequests += r.answered;
        }
      }
      const got: Partial<Record<Variant, number>> = {};
      for (const v of VARIANTS) {
        const a = acc[v];
        const perReq = (x: number) => (a.total > 0 ? x / a.total : 0);
        const userUs = perReq(a.user);
        const systemUs = perReq(a.system);
        const us = userUs + systemUs;
        const roundRps = a.secs > 0 ? a.total / a.secs : 0;
        errors += a.errors;
        got[v] = roundRps;
        rps[v].push(roundRps);
        cpu[v].push(us);
        console.log(
          JSON.stringify({
            round,
            variant: v,
            rps: Math.round(roundRps),
            server_cpu_us_per_req: r1(us),
            // User (JavaScript, the parser) and kernel (socket and log-file writes) apart.
            server_user_us: r1(userUs),
            server_system_us: r1(systemUs),
            p50_ms: median(a.p50),
            p99_ms: median(a.p99),
            client_cpu: median(a.clientCpu),
            errors: a.errors,
          }),
        );
      }
      const bare = got.bare as number;
      ratios.observed.push((got.observed as number) / bare);
      ratios.middleware.push((got.middleware as number) / bare);
      ratios.echo.push((got.echo as number) / bare);
    } finally {
      await Promise.all(servers.map((s) => stopChild(s.child)));
    }
  }

  // The observing servers flushed their logs on exit: every request they answered must be there.
  // Streamed: a fast run writes more than the largest string V8 can hold (512 MB).
  let logLines = 0;
  for await (const line of createInterface({ input: createReadStream(file), crlfDelay: Infinity })) {
    if (line.includes('"msg":"request"')) logLines++;
  }
  if (!process.env.BENCH_LOG_FILE) rmSync(file, { force: true });
  console.log(
    JSON.stringify({
      bench: 'overhead',
      rounds,
      seconds,
      slices,
      warmup,
      connections,
      errors,
      logged_requests: loggedRequests,
      request_log_lines: logLines,
      bare_rps_median: Math.round(median(rps.bare)),
      observed_rps_median: Math.round(median(rps.observed)),
      middleware_rps_median: Math.round(median(rps.middleware)),
      echo_rps_median: Math.round(median(rps.echo)),
      bare_cpu_us_per_req_median: r1(median(cpu.bare)),
      observed_cpu_us_per_req_median: r1(median(cpu.observed)),
      middleware_cpu_us_per_req_median: r1(median(cpu.middleware)),
      echo_cpu_us_per_req_median: r1(median(cpu.echo)),
      // What the echoed X-Request-Id alone leaves of bare: the ceiling for any observer that echoes it.
      echo_vs_bare: r3(median(ratios.echo)),
      middleware_vs_bare: r3(median(ratios.middleware)),
      observed_vs_bare_of_medians: r3(median(rps.observed) / median(rps.bare)),
      // The headline: serve()'s default observing, median of the per-round ratios.
      observed_vs_bare: r3(median(ratios.observed)),
    }),
  );
}

const serveIdx = process.argv.indexOf('--serve');
if (serveIdx >= 0) {
  const v = process.argv[serveIdx + 1] as Variant;
  await serveVariant(VARIANTS.includes(v) ? v : 'bare');
} else {
  await main();
}
