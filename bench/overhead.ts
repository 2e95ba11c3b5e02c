// Cost of the observe layer (server-level, as serve() with observeAt: 'server' installs it): requests/s of a Hono hello-world served by @hono/node-server with
// observe() (request id, one JSON log line per request to a real file, metrics) versus the same
// app without it. The log file is counted at the end: one line per request served. Servers run in child processes; this process only generates load
// (autocannon), alternating variants round by round so drift hits both equally.
//
//   npm run bench:overhead                      5 rounds x 5 s, 50 connections
//   BENCH_ROUNDS=3 BENCH_SECONDS=3 npm run bench:overhead
//
// One JSON line per round, then a last line with the medians and {"observed_vs_bare": ratio}.
import { type ChildProcess, spawn } from 'node:child_process';
import { once } from 'node:events';
import { readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';

type Variant = 'bare' | 'observed';

async function serveVariant(variant: Variant): Promise<void> {
  const { serve } = await import('@hono/node-server');
  const { Hono } = await import('hono');
  const app = new Hono();
  let server: ReturnType<typeof serve> | undefined;
  if (variant === 'observed') {
    const { createLogDestination, createLogger } = await import('../src/observe/log.js');
    const { createMetrics } = await import('../src/observe/metrics.js');
    const { observeServer, metricsHandler } = await import('../src/adapters/hono/observe.js');
    const { getRequestListener } = await import('@hono/node-server');
    const { createServer } = await import('node:http');
    const logger = createLogger({
      service: 'bench',
      instanceId: 'bench-1',
      // Batched synchronous file writes: the documented setting for busy services.
      destination: createLogDestination({ path: process.env.SHOAL_BENCH_LOG_PATH as string }),
    });
    const metrics = createMetrics({ service: 'bench', instanceId: 'bench-1' });
    metrics.startEventLoopMonitor();
    app.get('/metrics', metricsHandler(metrics));
    app.get('/', (c) => c.text('Hello, world!'));
    // What Shoal's serve() builds with observeAt: 'server' (the same listener @hono/node-server
    // uses for the bare variant, wrapped by the observe layer).
    const node = createServer(
      observeServer(app, getRequestListener(app.fetch), {
        logger,
        metrics,
        instanceId: 'bench-1',
        instanceHeader: true,
        unobservedRoutes: ['/metrics'],
      }),
    );
    node.listen(0, '127.0.0.1');
    server = node as unknown as ReturnType<typeof serve>;
    metrics.trackServer(node);
  } else {
    app.get('/', (c) => c.text('Hello, world!'));
    server = serve({ fetch: app.fetch, port: 0, hostname: '127.0.0.1' });
  }
  await once(server, 'listening');
  const addr = server.address();
  process.send?.({ port: typeof addr === 'object' && addr ? addr.port : 0 });
  process.on('message', (m) => {
    if (m === 'stop') process.exit(0);
    // CPU time spent by the server is far steadier than requests/s on a shared machine.
    if (m === 'cpu') {
      const u = process.cpuUsage();
      process.send?.({ cpuUs: u.user + u.system });
    }
  });
}

// Chosen by the parent, handed to the observed server.
function logFile(): string {
  return process.env.BENCH_LOG_FILE ?? join(tmpdir(), `shoal-bench-overhead-${process.pid}.ndjson`);
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

function median(xs: number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  const mid = Math.floor(s.length / 2);
  return s.length % 2 ? (s[mid] as number) : ((s[mid - 1] as number) + (s[mid] as number)) / 2;
}

async function serverCpuUs(child: ChildProcess): Promise<number> {
  const reply = once(child, 'message') as Promise<[{ cpuUs: number }]>;
  child.send('cpu');
  return (await reply)[0].cpuUs;
}

async function load(port: number, seconds: number, connections: number) {
  // No bundled types; the variable specifier keeps the import untyped on purpose.
  const spec = 'autocannon';
  const { default: autocannon } = (await import(spec)) as {
    default: (o: object) => Promise<{
      requests: { average: number; total: number };
      latency: { p99: number };
      errors: number;
      timeouts: number;
      non2xx: number;
    }>;
  };
  const r = await autocannon({
    url: `http://127.0.0.1:${port}/`,
    connections,
    duration: seconds,
    pipelining: 1,
  });
  return {
    rps: r.requests.average,
    total: r.requests.total,
    errors: r.errors + r.timeouts + r.non2xx,
    p99_ms: r.latency.p99,
  };
}

async function main(): Promise<void> {
  const rounds = Number(process.env.BENCH_ROUNDS ?? 5);
  const seconds = Number(process.env.BENCH_SECONDS ?? 5);
  const connections = Number(process.env.BENCH_CONNECTIONS ?? 50);
  const file = logFile();
  rmSync(file, { force: true });
  let observedRequests = 0;
  const servers = {
    bare: await startChild('bare', file),
    observed: await startChild('observed', file),
  };
  let summary: Record<string, unknown> | undefined;
  try {
    // Warm both up (JIT, connection pools) before anything counts.
    await load(servers.bare.port, 2, connections);
    observedRequests += (await load(servers.observed.port, 2, connections)).total;
    const results: Record<Variant, number[]> = { bare: [], observed: [] };
    const cpu: Record<Variant, number[]> = { bare: [], observed: [] };
    for (let round = 1; round <= rounds; round++) {
      // Alternate which variant goes first so neither always runs on a warmer/cooler machine.
      const order: Variant[] = round % 2 ? ['bare', 'observed'] : ['observed', 'bare'];
      for (const variant of order) {
        const cpuBefore = await serverCpuUs(servers[variant].child);
        const r = await load(servers[variant].port, seconds, connections);
        const cpuPerReq = (await serverCpuUs(servers[variant].child)) - cpuBefore;
        const us = r.total > 0 ? cpuPerReq / r.total : 0;
        results[variant].push(r.rps);
        if (variant === 'observed') observedRequests += r.total;
        cpu[variant].push(us);
        console.log(
          JSON.stringify({
            round,
            variant,
            rps: Math.round(r.rps),
            server_cpu_us_per_req: Math.round(us * 10) / 10,
            p99_ms: r.p99_ms,
            errors: r.errors,
          }),
        );
      }
    }
    const bare = median(results.bare);
    const observed = median(results.observed);
    summary = {
      bench: 'overhead',
      observe_at: 'server',
      rounds,
      seconds,
      connections,
      bare_rps_median: Math.round(bare),
      observed_rps_median: Math.round(observed),
      bare_cpu_us_per_req_median: Math.round(median(cpu.bare) * 10) / 10,
      observed_cpu_us_per_req_median: Math.round(median(cpu.observed) * 10) / 10,
      // Requests/s the server could do on the same CPU budget, observed relative to bare.
      cpu_efficiency_observed_vs_bare: Math.round((median(cpu.bare) / median(cpu.observed)) * 1000) / 1000,
      observed_vs_bare: Math.round((observed / bare) * 1000) / 1000,
    };
  } finally {
    // Let children exit on their own first (so --cpu-prof flags can write their profiles).
    await Promise.all(
      Object.values(servers).map(async ({ child }) => {
        const exited = once(child, 'exit');
        child.send('stop');
        const timer = setTimeout(() => child.kill('SIGKILL'), 5000);
        await exited;
        clearTimeout(timer);
      }),
    );
  }
  // The observed server flushed its log on exit: every request it answered must be in the file.
  const logLines = readFileSync(file, 'utf8')
    .split('\n')
    .filter((l) => l.includes('"msg":"request"')).length;
  if (!process.env.BENCH_LOG_FILE) rmSync(file, { force: true });
  console.log(JSON.stringify({ observed_requests: observedRequests, request_log_lines: logLines }));
  if (summary) console.log(JSON.stringify({ ...summary, request_log_lines: logLines }));
}

const serveIdx = process.argv.indexOf('--serve');
if (serveIdx >= 0) {
  await serveVariant(process.argv[serveIdx + 1] === 'observed' ? 'observed' : 'bare');
} else {
  await main();
}
