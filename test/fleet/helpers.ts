// Helpers for fleet tests: a temp fleet directory with a config, `shoal up` as a child process,
// the CLI as a child process, and a fixed-rate HTTP load generator that counts failures.
import { type ChildProcess, spawn } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { Agent, request } from 'node:http';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';

export const ROOT = resolve(fileURLToPath(new URL('../..', import.meta.url)));
export const FIXTURE = join(ROOT, 'test/fleet/fixtures/service.mjs');
const CLI = join(ROOT, 'src/cli/main.ts');
// Absolute, so the CLI can run with any working directory.
const TSX = import.meta.resolve('tsx');

export interface FleetDir {
  dir: string;
  config: string;
  cleanup(): void;
}

/** A temp directory holding `shoal.config.<ext>` with the given content. */
export function fleetDir(config: unknown, ext: 'json' | 'mjs' | 'ts' = 'json'): FleetDir {
  const dir = mkdtempSync(join(tmpdir(), 'shoal-fleet-test-'));
  const file = join(dir, `shoal.config.${ext}`);
  writeFileSync(file, typeof config === 'string' ? config : JSON.stringify(config, null, 2));
  return { dir, config: file, cleanup: () => rmSync(dir, { recursive: true, force: true }) };
}

export interface CliResult {
  code: number | null;
  stdout: string;
  stderr: string;
}

/** Run `shoal <args>` to completion. */
export function runCli(
  args: string[],
  opts: { cwd?: string; env?: NodeJS.ProcessEnv } = {},
): Promise<CliResult> {
  return new Promise((res, rej) => {
    const child = spawn(process.execPath, ['--import', TSX, CLI, ...args], {
      cwd: opts.cwd ?? ROOT,
      env: { ...process.env, ...opts.env },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (c: Buffer) => {
      stdout += c.toString();
    });
    child.stderr.on('data', (c: Buffer) => {
      stderr += c.toString();
    });
    child.once('error', rej);
    child.once('close', (code) => res({ code, stdout, stderr }));
  });
}

export interface StateFile {
  pid: number;
  control: { url: string; token: string };
  services: { name: string; url: string }[];
}

export interface UpProcess {
  child: ChildProcess;
  state: StateFile;
  url(service: string): string;
  output(): string;
  waitFor(re: RegExp, timeoutMs: number): Promise<void>;
  exited: Promise<number | null>;
  /** SIGINT, then wait for exit (SIGKILL after the timeout). */
  stop(timeoutMs?: number): Promise<number | null>;
}

/** Start `shoal up --config <file>` and wait until its state file appears. */
export async function startUp(
  fd: FleetDir,
  opts: { args?: string[]; env?: NodeJS.ProcessEnv; timeoutMs?: number } = {},
): Promise<UpProcess> {
  const child = spawn(
    process.execPath,
    ['--import', TSX, CLI, 'up', '--config', fd.config, ...(opts.args ?? [])],
    {
      cwd: ROOT,
      env: { ...process.env, ...opts.env },
      stdio: ['ignore', 'pipe', 'pipe'],
    },
  );
  let out = '';
  const waiters: (() => void)[] = [];
  const onData = (c: Buffer) => {
    out += c.toString();
    for (const w of waiters) w();
  };
  child.stdout!.on('data', onData);
  child.stderr!.on('data', onData);
  const exited = new Promise<number | null>((r) => child.once('exit', (code) => r(code)));
  const waitFor = (re: RegExp, timeoutMs: number) =>
    new Promise<void>((res, rej) => {
      const check = () => {
        if (re.test(out)) {
          clearTimeout(t);
          res();
        }
      };
      const t = setTimeout(
        () => rej(new Error(`timed out waiting for ${re}; output:\n${out.slice(-4000)}`)),
        timeoutMs,
      );
      waiters.push(check);
      check();
      exited.then(() => {
        if (!re.test(out)) {
          clearTimeout(t);
          rej(new Error(`shoal up exited while waiting for ${re}; output:\n${out.slice(-4000)}`));
        }
      });
    });
  const stateFile = join(fd.dir, '.shoal', 'fleet.json');
  const deadline = Date.now() + (opts.timeoutMs ?? 60_000);
  let exitedEarly = false;
  exited.then(() => {
    exitedEarly = true;
  });
  while (!existsSync(stateFile)) {
    if (exitedEarly) throw new Error(`shoal up exited before it was up; output:\n${out}`);
    if (Date.now() > deadline) {
      child.kill('SIGKILL');
      throw new Error(`shoal up did not come up in time; output:\n${out}`);
    }
    await new Promise((r) => setTimeout(r, 100));
  }
  const state = JSON.parse(readFileSync(stateFile, 'utf8')) as StateFile;
  return {
    child,
    state,
    url: (service) => {
      const s = state.services.find((x) => x.name === service);
      if (!s) throw new Error(`no service ${service}`);
      return s.url;
    },
    output: () => out,
    waitFor,
    exited,
    async stop(timeoutMs = 30_000) {
      if (child.exitCode !== null || child.signalCode !== null) return child.exitCode;
      child.kill('SIGINT');
      const t = setTimeout(() => child.kill('SIGKILL'), timeoutMs);
      const code = await exited;
      clearTimeout(t);
      return code;
    },
  };
}

export interface HttpResult {
  status: number;
  body: string;
  headers: Record<string, string | string[] | undefined>;
}

/** One HTTP request; rejects on a connection error. */
export function httpRequest(
  url: string,
  opts: { method?: string; body?: string; headers?: Record<string, string>; agent?: Agent | false } = {},
): Promise<HttpResult> {
  return new Promise((res, rej) => {
    const req = request(
      url,
      { method: opts.method ?? 'GET', headers: opts.headers, agent: opts.agent ?? false },
      (r) => {
        let body = '';
        r.setEncoding('utf8');
        r.on('data', (c: string) => {
          body += c;
        });
        r.on('end', () => res({ status: r.statusCode ?? 0, body, headers: r.headers }));
        r.on('error', rej);
      },
    );
    req.setTimeout(15_000, () => req.destroy(new Error('request timed out')));
    req.on('error', rej);
    req.end(opts.body);
  });
}

export interface LoadReport {
  sent: number;
  ok: number;
  failed: number;
  status5xx: number;
  errors: string[];
  byInstance: Map<string, number>;
  rps: number;
}

export interface Load {
  stop(): Promise<LoadReport>;
  snapshot(): { sent: number; failed: number; status5xx: number };
}

/**
 * Fixed-rate load: `rps` requests per second over keep-alive connections, alternating
 * GET /whoami and POST /orders with an Idempotency-Key. Every connection error and 5xx is counted.
 */
export function startLoad(baseUrl: string, rps: number): Load {
  const agent = new Agent({ keepAlive: true, maxSockets: 64 });
  const report: LoadReport = {
    sent: 0,
    ok: 0,
    failed: 0,
    status5xx: 0,
    errors: [],
    byInstance: new Map(),
    rps: 0,
  };
  const pending = new Set<Promise<void>>();
  const started = Date.now();
  let n = 0;
  const fire = () => {
    const i = n++;
    report.sent++;
    const post = i % 2 === 1;
    const p = httpRequest(
      post ? `${baseUrl}/orders` : `${baseUrl}/whoami`,
      post
        ? {
            method: 'POST',
            body: JSON.stringify({ item: 'x', quantity: i }),
            headers: { 'content-type': 'application/json', 'idempotency-key': `k-${i}-${started}` },
            agent,
          }
        : { agent },
    ).then(
      (r) => {
        if (r.status >= 500) {
          report.status5xx++;
          if (report.errors.length < 20) report.errors.push(`${r.status} ${r.body.slice(0, 200)}`);
        } else if (r.status < 300) {
          report.ok++;
          const inst = String(r.headers['x-instance-id'] ?? '?');
          report.byInstance.set(inst, (report.byInstance.get(inst) ?? 0) + 1);
        } else {
          report.failed++;
          if (report.errors.length < 20) report.errors.push(`${r.status} ${r.body.slice(0, 200)}`);
        }
      },
      (err: Error) => {
        report.failed++;
        if (report.errors.length < 20) report.errors.push(err.message);
      },
    );
    pending.add(p);
    p.finally(() => pending.delete(p));
  };
  // Catch-up scheduling keeps the average rate even when timers fire late on a busy machine.
  const timer = setInterval(() => {
    const due = Math.floor(((Date.now() - started) / 1000) * rps);
    while (n < due) fire();
  }, 5);
  return {
    snapshot: () => ({ sent: report.sent, failed: report.failed, status5xx: report.status5xx }),
    async stop() {
      clearInterval(timer);
      const elapsed = (Date.now() - started) / 1000;
      await Promise.all([...pending]);
      agent.destroy();
      report.rps = report.sent / elapsed;
      return report;
    },
  };
}

/** True while a process with this pid exists. */
export function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (err) {
    return (err as NodeJS.ErrnoException).code === 'EPERM';
  }
}

export const sleep = (ms: number) => new Promise<void>((r) => setTimeout(r, ms));

export interface PsRow {
  service: string;
  replica: number;
  id: string | undefined;
  pid: number | undefined;
  port: number | undefined;
  state: string;
  ready: boolean;
  restarts: number;
  requests: number;
}

/** `shoal ps --json` rows. */
export async function psJson(fd: FleetDir): Promise<PsRow[]> {
  const r = await runCli(['ps', '--json', '--config', fd.config]);
  if (r.code !== 0) throw new Error(`shoal ps failed (${r.code}): ${r.stderr}`);
  const status = JSON.parse(r.stdout) as { services: { replicas: PsRow[] }[] };
  return status.services.flatMap((s) => s.replicas);
}
