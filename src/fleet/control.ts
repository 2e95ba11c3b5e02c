/**
 * The control channel between a running `shoal up` and the `shoal restart` / `shoal ps` commands:
 * a loopback HTTP server guarded by a random token, both recorded in `.shoal/fleet.json` next to
 * the config file (mode 0600, removed when `up` exits).
 */
import { randomBytes, timingSafeEqual } from 'node:crypto';
import {
  existsSync,
  mkdirSync,
  readFileSync,
  renameSync,
  rmdirSync,
  rmSync,
  statSync,
  writeFileSync,
} from 'node:fs';
import { createServer, request as httpRequest, type IncomingMessage } from 'node:http';
import { dirname, join, resolve } from 'node:path';
import { isShoalError, ShoalError } from '../errors.js';
import { lineSplitter } from '../util/lines.js';
import type { ReplicaStatus } from './supervisor.js';

/** A resource as reported by status: its URL with any password removed. */
export interface ResourceStatus {
  name: 'redis' | 'postgres';
  url: string;
  source: string;
}

/** Everything `shoal ps` shows. */
export interface FleetStatus {
  name: string;
  pid: number;
  startedAt: string;
  configFile: string;
  resources: ResourceStatus[];
  services: { name: string; url: string; replicas: ReplicaStatus[] }[];
}

/** What the control server needs from a running fleet. */
export interface FleetControl {
  status(): FleetStatus;
  restart(service: string, progress: (message: string) => void): Promise<void>;
}

/** Contents of `.shoal/fleet.json`. */
export interface FleetStateFile {
  version: 1;
  pid: number;
  name: string;
  configFile: string;
  startedAt: string;
  control: { url: string; token: string };
  services: { name: string; url: string }[];
}

/** A message in the NDJSON stream a restart request answers with. */
export type RestartEvent =
  | { type: 'progress'; message: string }
  | { type: 'done' }
  | { type: 'error'; code: string; message: string };

/** Name of the state directory created next to the config file. */
export const STATE_DIR = '.shoal';

/**
 * Where the state file of a fleet lives: `<config dir>/.shoal/fleet.json`. `config` may be a config
 * file, its directory, or undefined (then `cwd`).
 *
 * @example
 * stateFilePath('examples/orders/shoal.config.ts', process.cwd());
 */
export function stateFilePath(config: string | undefined, cwd: string): string {
  let dir = cwd;
  if (config !== undefined) {
    const p = resolve(cwd, config);
    dir = existsSync(p) && statSync(p).isDirectory() ? p : dirname(p);
  }
  return join(dir, STATE_DIR, 'fleet.json');
}

/** A running control server. */
export interface ControlServer {
  url: string;
  token: string;
  close(): Promise<void>;
}

function sameToken(a: string, b: string): boolean {
  const x = Buffer.from(a);
  const y = Buffer.from(b);
  return x.length === y.length && timingSafeEqual(x, y);
}

/**
 * Serve the control API on a random loopback port.
 *
 * @example
 * const control = await startControlServer(fleet);
 * writeStateFile(path, { ..., control: { url: control.url, token: control.token } });
 */
export async function startControlServer(fleet: FleetControl): Promise<ControlServer> {
  const token = randomBytes(24).toString('base64url');
  const server = createServer((req, res) => {
    const auth = req.headers.authorization ?? '';
    if (!sameToken(auth, `Bearer ${token}`)) {
      res.writeHead(401, { 'content-type': 'application/json' }).end('{"error":"bad token"}');
      return;
    }
    const url = new URL(req.url ?? '/', 'http://control');
    if (req.method === 'GET' && url.pathname === '/status') {
      res.writeHead(200, { 'content-type': 'application/json' }).end(JSON.stringify(fleet.status()));
      return;
    }
    if (req.method === 'POST' && url.pathname === '/restart') {
      const service = url.searchParams.get('service') ?? '';
      res.writeHead(200, { 'content-type': 'application/x-ndjson' });
      const send = (e: RestartEvent) => {
        if (!res.writableEnded) res.write(JSON.stringify(e) + '\n');
      };
      fleet
        .restart(service, (message) => send({ type: 'progress', message }))
        .then(
          () => send({ type: 'done' }),
          (err: unknown) =>
            send({
              type: 'error',
              code: isShoalError(err) ? err.code : 'fleet.restart_failed',
              message: (err as Error).message,
            }),
        )
        .finally(() => res.end());
      return;
    }
    res.writeHead(404, { 'content-type': 'application/json' }).end('{"error":"not found"}');
  });
  server.keepAliveTimeout = 1000;
  await new Promise<void>((res, rej) => {
    server.once('error', rej);
    server.listen(0, '127.0.0.1', () => res());
  });
  const addr = server.address();
  const port = typeof addr === 'object' && addr ? addr.port : 0;
  return {
    url: `http://127.0.0.1:${port}`,
    token,
    close: () =>
      new Promise<void>((res) => {
        server.close(() => res());
        server.closeAllConnections();
      }),
  };
}

/**
 * Write the state file (creating `.shoal/`), readable only by the owner: it holds the control token.
 *
 * @example
 * writeStateFile('/app/.shoal/fleet.json', state);
 */
export function writeStateFile(path: string, state: FleetStateFile): void {
  const dir = dirname(path);
  mkdirSync(dir, { recursive: true, mode: 0o700 });
  // `shoal ps` and other readers poll for this file: written in place, they could open it between
  // the create and the write and read nothing. A rename within one directory is atomic.
  const tmp = `${path}.${process.pid}.tmp`;
  writeFileSync(tmp, JSON.stringify(state, null, 2) + '\n', { mode: 0o600 });
  renameSync(tmp, path);
}

/** Remove the state file, and `.shoal/` too when nothing else is in it. */
export function removeStateFile(path: string): void {
  rmSync(path, { force: true });
  try {
    rmdirSync(dirname(path));
  } catch {
    // not empty or already gone
  }
}

function pidAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (err) {
    return (err as NodeJS.ErrnoException).code === 'EPERM';
  }
}

/**
 * Read the state file of a running fleet, or throw `fleet.not_running` with a message that says
 * where it looked and how to start one. A state file whose process is gone is removed.
 *
 * @example
 * const state = readStateFile(stateFilePath(undefined, process.cwd()));
 */
export function readStateFile(path: string): FleetStateFile {
  if (!existsSync(path)) {
    throw new ShoalError(
      'fleet.not_running',
      `No fleet is running here: ${path} does not exist. Start one with \`shoal up\` ` +
        '(or pass --config pointing at the config a running fleet was started with).',
    );
  }
  let state: FleetStateFile;
  try {
    state = JSON.parse(readFileSync(path, 'utf8')) as FleetStateFile;
  } catch (err) {
    throw new ShoalError(
      'fleet.not_running',
      `Unreadable fleet state file ${path}: ${(err as Error).message}`,
    );
  }
  if (typeof state.pid !== 'number' || !pidAlive(state.pid)) {
    removeStateFile(path);
    throw new ShoalError(
      'fleet.not_running',
      `No fleet is running here: ${path} names pid ${state.pid}, which has exited (removed the stale file). ` +
        'Start one with `shoal up`.',
    );
  }
  return state;
}

function call(state: FleetStateFile, method: string, path: string): Promise<IncomingMessage> {
  return new Promise((res, rej) => {
    const req = httpRequest(new URL(path, state.control.url), {
      method,
      headers: { authorization: `Bearer ${state.control.token}` },
      agent: false,
    });
    req.once('response', res);
    req.once('error', (err) =>
      rej(
        new ShoalError(
          'fleet.not_running',
          `The fleet (pid ${state.pid}) does not answer on its control endpoint ${state.control.url}: ${err.message}`,
          { cause: err },
        ),
      ),
    );
    req.end();
  });
}

async function readBody(res: IncomingMessage): Promise<string> {
  res.setEncoding('utf8');
  let body = '';
  for await (const chunk of res) body += chunk as string;
  return body;
}

/**
 * Ask a running fleet for its status.
 *
 * @example
 * const status = await requestStatus(readStateFile(stateFilePath(undefined, process.cwd())));
 */
export async function requestStatus(state: FleetStateFile): Promise<FleetStatus> {
  const res = await call(state, 'GET', '/status');
  const body = await readBody(res);
  if (res.statusCode !== 200) {
    throw new ShoalError(
      'fleet.not_running',
      `The fleet's control endpoint answered ${res.statusCode}: ${body}`,
    );
  }
  return JSON.parse(body) as FleetStatus;
}

/**
 * Ask a running fleet to roll a service; `onEvent` sees progress as it happens. Rejects with the
 * fleet's error (e.g. `fleet.unknown_service`, `fleet.restart_failed`).
 *
 * @example
 * await requestRestart(state, 'api', (e) => e.type === 'progress' && console.log(e.message));
 */
export async function requestRestart(
  state: FleetStateFile,
  service: string,
  onEvent: (event: RestartEvent) => void = () => {},
): Promise<void> {
  const res = await call(state, 'POST', `/restart?service=${encodeURIComponent(service)}`);
  if (res.statusCode !== 200) {
    const body = await readBody(res);
    throw new ShoalError(
      'fleet.not_running',
      `The fleet's control endpoint answered ${res.statusCode}: ${body}`,
    );
  }
  res.setEncoding('utf8');
  let outcome: RestartEvent | undefined;
  // An unfinished last line means the connection broke mid-event: it is dropped, not parsed.
  const split = lineSplitter((line) => {
    if (line.trim() === '') return;
    const event = JSON.parse(line) as RestartEvent;
    if (event.type === 'progress') onEvent(event);
    else outcome = event;
  });
  for await (const chunk of res) split.push(chunk as string);
  if (outcome?.type === 'done') return;
  if (outcome?.type === 'error') {
    throw new ShoalError(outcome.code as ShoalError['code'], outcome.message);
  }
  throw new ShoalError(
    'fleet.restart_failed',
    'The fleet closed the control connection before the restart finished',
  );
}
