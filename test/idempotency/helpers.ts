// Shared pieces of the idempotency tests: fixture instances as child processes, HTTP helpers.
import { type ChildProcess, spawn } from 'node:child_process';
import { createInterface } from 'node:readline';
import { fileURLToPath } from 'node:url';

const FIXTURE = fileURLToPath(new URL('./fixtures/server.ts', import.meta.url));
const ROOT = fileURLToPath(new URL('../../', import.meta.url));

export interface Instance {
  name: string;
  url: string;
  child: ChildProcess;
  kill(signal?: NodeJS.Signals): Promise<void>;
  pause(): void;
  resume(): void;
}

/** Start one fixture server in its own process; resolves once it prints its port. */
export async function startInstance(name: string, env: Record<string, string>): Promise<Instance> {
  const child = spawn(process.execPath, ['--import', 'tsx', FIXTURE], {
    cwd: ROOT,
    env: { ...process.env, ...env, INSTANCE: name },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let stderr = '';
  child.stderr!.on('data', (d) => {
    stderr += String(d);
  });
  const port = await new Promise<number>((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`${name} did not start: ${stderr}`)), 30_000);
    const rl = createInterface({ input: child.stdout! });
    rl.once('line', (line) => {
      clearTimeout(timer);
      resolve((JSON.parse(line) as { port: number }).port);
    });
    child.once('exit', (code) => {
      clearTimeout(timer);
      reject(new Error(`${name} exited with ${code}: ${stderr}`));
    });
  });
  return {
    name,
    url: `http://127.0.0.1:${port}`,
    child,
    async kill(signal: NodeJS.Signals = 'SIGKILL') {
      if (child.exitCode !== null || child.signalCode !== null) return;
      const exited = new Promise((r) => child.once('exit', r));
      child.kill('SIGCONT');
      child.kill(signal);
      await exited;
    },
    pause: () => child.kill('SIGSTOP'),
    resume: () => child.kill('SIGCONT'),
  };
}

export interface Reply {
  status: number;
  headers: Headers;
  text: string;
}

/** POST JSON text with an Idempotency-Key (sf-string quoted unless `raw`). */
export async function post(
  url: string,
  body: string,
  opts: { key?: string; rawKey?: string; delayMs?: number; headers?: Record<string, string> } = {},
): Promise<Reply> {
  const headers: Record<string, string> = { 'content-type': 'application/json', ...opts.headers };
  if (opts.key !== undefined) headers['idempotency-key'] = `"${opts.key}"`;
  if (opts.rawKey !== undefined) headers['idempotency-key'] = opts.rawKey;
  if (opts.delayMs !== undefined) headers['x-delay-ms'] = String(opts.delayMs);
  const res = await fetch(url, { method: 'POST', headers, body });
  return { status: res.status, headers: res.headers, text: await res.text() };
}

export const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** Poll `check` until it returns true or `timeoutMs` passes. */
export async function until(
  check: () => Promise<boolean>,
  timeoutMs = 10_000,
  what = 'condition',
): Promise<void> {
  const end = Date.now() + timeoutMs;
  while (!(await check())) {
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
    await sleep(25);
  }
}

/** The record key the default scope gives a loopback client (see scopedKey in the engine). */
export function loopbackRecordKey(key: string): string {
  const scope = 'ip:127.0.0.1';
  return `${scope.length}:${scope}|${key}`;
}

export const ORDERS_DDL = `CREATE TABLE orders (
  id serial PRIMARY KEY, idem_key text, sku text NOT NULL, qty integer NOT NULL, instance text NOT NULL
)`;
