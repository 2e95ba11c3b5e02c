// Balancer benchmark: (a) one replica direct, (b) nginx (1 worker, upstream keepalive, least_conn)
// in front of 2 replicas, (c) shoal's balancer in front of the same 2 replicas. Same run, several
// rounds in rotating order, medians. Load from wrk when installed, else autocannon; 50 connections.
// Every server is its own process; nothing is pinned (the target machines have 2 cores).
//
//   npm run bench:balancer            BENCH_ROUNDS=5 BENCH_SECONDS=5 by default
//
// Prints one JSON line per measurement and a last line with the ratios.
import { type ChildProcess, execFileSync, spawn } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import http from 'node:http';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { shipped } from './shipped.js';

const SELF = fileURLToPath(import.meta.url);
const CONNECTIONS = 50;

// ---- child roles -----------------------------------------------------------------------------

async function serveReplica(port: number): Promise<void> {
  const body = Buffer.from('{"hello":"world"}');
  http
    .createServer((_req, res) => {
      res.writeHead(200, { 'content-type': 'application/json', 'content-length': body.length });
      res.end(body);
    })
    .listen(port, '127.0.0.1', () => process.send?.('ready'));
}

async function serveBalancer(port: number, backends: number[]): Promise<void> {
  const { createBalancer } =
    await shipped<typeof import('../src/fleet/balancer/index.js')>('fleet/balancer/index.js');
  const lb = createBalancer({ service: 'bench', port });
  for (const [i, p] of backends.entries()) lb.addBackend({ id: `r${i}`, host: '127.0.0.1', port: p });
  await lb.listen();
  await Promise.all(backends.map((_p, i) => lb.waitReady(`r${i}`, 10_000)));
  process.send?.('ready');
}

// ---- helpers ---------------------------------------------------------------------------------

/** `n` distinct free loopback ports (all held open at once, so none repeats). */
async function freePorts(n: number): Promise<number[]> {
  const servers = await Promise.all(
    Array.from(
      { length: n },
      () =>
        new Promise<ReturnType<typeof createServer>>((resolve, reject) => {
          const s = createServer();
          s.on('error', reject);
          s.listen(0, '127.0.0.1', () => resolve(s));
        }),
    ),
  );
  const ports = servers.map((s) => {
    const a = s.address();
    return typeof a === 'object' && a ? a.port : 0;
  });
  await Promise.all(servers.map((s) => new Promise((r) => s.close(r))));
  return ports;
}

function which(cmd: string): string | null {
  for (const dir of (process.env['PATH'] ?? '')
    .split(':')
    .concat(['/usr/sbin', '/usr/local/sbin', '/sbin'])) {
    const p = join(dir, cmd);
    if (dir && existsSync(p)) return p;
  }
  return null;
}

const children: ChildProcess[] = [];

function spawnRole(args: string[]): Promise<ChildProcess> {
  const child = spawn(process.execPath, ['--import', 'tsx', SELF, ...args], {
    stdio: ['ignore', 'inherit', 'inherit', 'ipc'],
  });
  children.push(child);
  return new Promise((resolve, reject) => {
    child.once('message', () => resolve(child));
    child.once('exit', (code) => reject(new Error(`${args.join(' ')} exited with ${code}`)));
  });
}

async function waitHttp(port: number, timeoutMs = 10_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const ok = await new Promise<boolean>((resolve) => {
      const req = http.get({ host: '127.0.0.1', port, path: '/', agent: false }, (res) => {
        res.resume();
        resolve(res.statusCode === 200);
      });
      req.on('error', () => resolve(false));
    });
    if (ok) return;
    if (Date.now() > deadline) throw new Error(`nothing answering 200 on port ${port}`);
    await new Promise((r) => setTimeout(r, 100));
  }
}

/** CPU seconds (user+system) a process has used so far; null where /proc is unavailable. */
function cpuSeconds(pid: number | undefined): number | null {
  if (pid === undefined) return null;
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
    return (Number(fields[11]) + Number(fields[12])) / 100;
  } catch {
    return null;
  }
}

function parseWrkDuration(s: string): number {
  const m = /^([\d.]+)(us|ms|s|m)$/.exec(s.trim());
  if (!m) return Number.NaN;
  const v = Number(m[1]);
  return m[2] === 'us' ? v / 1000 : m[2] === 'ms' ? v : m[2] === 's' ? v * 1000 : v * 60_000;
}

interface Load {
  rps: number;
  p99Ms: number;
  errors: number;
}

function runLoad(tool: 'wrk' | 'autocannon', port: number, seconds: number): Promise<Load> {
  const url = `http://127.0.0.1:${port}/`;
  return new Promise((resolve, reject) => {
    const args =
      tool === 'wrk'
        ? ['-t1', `-c${CONNECTIONS}`, `-d${seconds}s`, '--latency', url]
        : [
            join(process.cwd(), 'node_modules/autocannon/autocannon.js'),
            '-c',
            String(CONNECTIONS),
            '-d',
            String(seconds),
            '-j',
            url,
          ];
    const child = spawn(tool === 'wrk' ? 'wrk' : process.execPath, args, {
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    let out = '';
    child.stdout.on('data', (d: Buffer) => {
      out += d;
    });
    child.on('error', reject);
    child.on('exit', () => {
      try {
        if (tool === 'wrk') {
          const rps = Number(/Requests\/sec:\s+([\d.]+)/.exec(out)?.[1]);
          const p99 = parseWrkDuration(/\s99%\s+(\S+)/.exec(out)?.[1] ?? '');
          const errs = /Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)/.exec(out);
          const non2xx = Number(/Non-2xx or 3xx responses: (\d+)/.exec(out)?.[1] ?? 0);
          const errors = (errs ? errs.slice(1).reduce((a, b) => a + Number(b), 0) : 0) + non2xx;
          resolve({ rps, p99Ms: p99, errors });
        } else {
          const j = JSON.parse(out);
          resolve({ rps: j.requests.average, p99Ms: j.latency.p99, errors: j.errors + j.non2xx });
        }
      } catch (err) {
        reject(new Error(`could not parse ${tool} output: ${String(err)}\n${out}`));
      }
    });
  });
}

function median(xs: number[]): number {
  const s = [...xs].filter((x) => Number.isFinite(x)).sort((a, b) => a - b);
  if (s.length === 0) return Number.NaN;
  const mid = s.length >> 1;
  return s.length % 2 ? s[mid]! : (s[mid - 1]! + s[mid]!) / 2;
}

const round3 = (x: number): number => Math.round(x * 1000) / 1000;

// ---- main ------------------------------------------------------------------------------------

async function main(): Promise<void> {
  const rounds = Number(process.env['BENCH_ROUNDS'] ?? 5);
  const seconds = Number(process.env['BENCH_SECONDS'] ?? 5);
  const tool = which('wrk') ? 'wrk' : 'autocannon';
  const nginxBin = which('nginx');
  const [r1, r2, lbPort, ngPort] = (await freePorts(4)) as [number, number, number, number];

  const replicas = await Promise.all([
    spawnRole(['--replica', String(r1)]),
    spawnRole(['--replica', String(r2)]),
  ]);
  const shoal = await spawnRole(['--balancer', String(lbPort), String(r1), String(r2)]);
  const targets: Array<{ name: string; port: number; pid: number | undefined }> = [
    { name: 'direct', port: r1, pid: replicas[0]!.pid },
    { name: 'shoal', port: lbPort, pid: shoal.pid },
  ];

  let nginxDir: string | null = null;
  let nginxProc: ChildProcess | null = null;
  if (nginxBin) {
    nginxDir = mkdtempSync(join(tmpdir(), 'shoal-bench-nginx-'));
    const conf = join(nginxDir, 'nginx.conf');
    const t = (n: string) => join(nginxDir!, n);
    writeFileSync(
      conf,
      `worker_processes 1;
daemon off;
pid ${t('nginx.pid')};
error_log ${t('error.log')} warn;
events { worker_connections 4096; }
http {
  access_log off;
  client_body_temp_path ${t('cb')}; proxy_temp_path ${t('px')}; fastcgi_temp_path ${t('fc')};
  uwsgi_temp_path ${t('uw')}; scgi_temp_path ${t('sc')};
  upstream replicas { least_conn; server 127.0.0.1:${r1}; server 127.0.0.1:${r2}; keepalive 64; }
  server {
    listen 127.0.0.1:${ngPort};
    location / {
      proxy_pass http://replicas;
      proxy_http_version 1.1;
      proxy_set_header Connection "";
      proxy_set_header Host $host;
      proxy_set_header X-Forwarded-For $proxy_add_x_forwarded_for;
    }
  }
}
`,
    );
    nginxProc = spawn(nginxBin, ['-c', conf], { stdio: ['ignore', 'ignore', 'inherit'] });
    await waitHttp(ngPort);
    // The worker does the proxying; the master only supervises.
    let workerPid: number | undefined;
    try {
      const out = execFileSync('pgrep', ['-P', String(nginxProc.pid)], { encoding: 'utf8' }).trim();
      workerPid = Number(out.split('\n')[0]) || undefined;
    } catch {
      workerPid = undefined;
    }
    targets.splice(1, 0, { name: 'nginx', port: ngPort, pid: workerPid });
  } else {
    console.log(
      JSON.stringify({
        note: 'nginx is not installed: skipping the nginx comparison (e.g. apt-get install -y nginx)',
      }),
    );
  }

  await waitHttp(lbPort);
  console.log(
    JSON.stringify({
      setup: { tool, connections: CONNECTIONS, rounds, seconds, replicas: 2, nginx: Boolean(nginxBin) },
    }),
  );
  // Warm up every path before measuring: a Node balancer needs several seconds of traffic before
  // its hot path is optimised, and the keep-alive pools fill during the first requests.
  const warmup = Number(process.env['BENCH_WARMUP_SECONDS'] ?? 6);
  for (const t of targets) await runLoad(tool, t.port, t.name === 'shoal' ? warmup : 2);

  const results = new Map<string, { rps: number[]; p99: number[]; cpuUs: number[]; errors: number }>();
  for (const t of targets) results.set(t.name, { rps: [], p99: [], cpuUs: [], errors: 0 });
  for (let round = 0; round < rounds; round++) {
    // Rotate the order so no target always runs first/last on a noisy machine.
    for (let k = 0; k < targets.length; k++) {
      const t = targets[(round + k) % targets.length]!;
      const before = cpuSeconds(t.pid);
      const load = await runLoad(tool, t.port, seconds);
      const after = cpuSeconds(t.pid);
      const cpuUs =
        before !== null && after !== null && load.rps > 0
          ? ((after - before) * 1e6) / (load.rps * seconds)
          : null;
      const r = results.get(t.name)!;
      r.rps.push(load.rps);
      r.p99.push(load.p99Ms);
      if (cpuUs !== null) r.cpuUs.push(cpuUs);
      r.errors += load.errors;
      console.log(
        JSON.stringify({
          target: t.name,
          round: round + 1,
          rps: Math.round(load.rps),
          p99_ms: round3(load.p99Ms),
          proxy_cpu_us_per_req: cpuUs === null ? null : Math.round(cpuUs * 10) / 10,
          errors: load.errors,
        }),
      );
    }
  }

  const summary: Record<string, unknown> = {};
  for (const [name, r] of results) {
    summary[name] = {
      rps: Math.round(median(r.rps)),
      p99_ms: round3(median(r.p99)),
      cpu_us_per_req: r.cpuUs.length ? Math.round(median(r.cpuUs) * 10) / 10 : null,
      errors: r.errors,
    };
    console.log(JSON.stringify({ median: name, ...(summary[name] as object) }));
  }
  const s = results.get('shoal')!;
  const d = results.get('direct')!;
  const n = results.get('nginx');
  console.log(
    JSON.stringify({
      shoal_vs_nginx_rps: n ? round3(median(s.rps) / median(n.rps)) : null,
      shoal_vs_nginx_p99: n ? round3(median(s.p99) / median(n.p99)) : null,
      shoal_vs_direct_rps: round3(median(s.rps) / median(d.rps)),
      nginx: n ? 'measured' : 'not installed',
      tool,
      connections: CONNECTIONS,
      rounds,
      seconds,
    }),
  );

  nginxProc?.kill('SIGQUIT');
  if (nginxProc && nginxProc.exitCode === null) await new Promise((r) => nginxProc!.once('exit', r));
  if (nginxDir) rmSync(nginxDir, { recursive: true, force: true });
}

function stopChildren(): void {
  for (const c of children) if (c.exitCode === null) c.kill('SIGTERM');
}

const role = process.argv[2];
if (role === '--replica') {
  await serveReplica(Number(process.argv[3]));
} else if (role === '--balancer') {
  await serveBalancer(Number(process.argv[3]), process.argv.slice(4).map(Number));
} else {
  process.on('SIGINT', () => {
    stopChildren();
    process.exit(130);
  });
  try {
    await main();
  } finally {
    stopChildren();
  }
}
