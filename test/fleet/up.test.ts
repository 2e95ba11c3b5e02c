// `shoal up` as a child process with 3 fixture replicas behind the balancer, driven over HTTP:
// replica environment, `shoal ps`, two rolling restarts under load, kill -9 under load, and
// Ctrl-C leaving no process, no state file and no temp directory behind.
import assert from 'node:assert/strict';
import { existsSync, mkdtempSync, readdirSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, test } from 'node:test';
import { type FleetStateFile, requestStatus } from '../../src/fleet/control.js';
import type { ReplicaStatus } from '../../src/fleet/supervisor.js';
import {
  alive,
  FIXTURE,
  type FleetDir,
  fleetDir,
  httpRequest,
  runCli,
  sleep,
  startLoad,
  startUp,
  type UpProcess,
} from './helpers.js';

let fd: FleetDir;
let up: UpProcess;
let privateTmp: string;
const seenPids = new Set<number>();

async function replicas(): Promise<ReplicaStatus[]> {
  const status = await requestStatus(up.state as unknown as FleetStateFile);
  const rows = status.services.find((s) => s.name === 'api')!.replicas;
  for (const r of rows) if (r.pid !== undefined) seenPids.add(r.pid);
  return rows;
}

before(async () => {
  privateTmp = mkdtempSync(join(tmpdir(), 'shoal-up-tmp-'));
  fd = fleetDir({
    services: {
      api: {
        command: `node ${FIXTURE}`,
        replicas: 3,
        port: 0,
        health: { interval: '500ms' },
        stopTimeout: '10s',
      },
    },
  });
  // A private TMPDIR (and no tsx cache) so the test can see every temp entry `up` might leave.
  up = await startUp(fd, { env: { TMPDIR: privateTmp, TSX_DISABLE_CACHE: '1' } });
});

after(async () => {
  await up?.stop(5000);
  for (const pid of seenPids) if (alive(pid)) process.kill(pid, 'SIGKILL');
  fd?.cleanup();
  rmSync(privateTmp, { recursive: true, force: true });
});

test('up prints the public URL and the status table; shoal ps prints the same table', async () => {
  const url = up.url('api');
  assert.match(url, /^http:\/\/127\.0\.0\.1:\d+$/);
  await up.waitFor(
    /SERVICE\s+REPLICA\s+PID\s+PORT\s+STATE\s+READY\s+IN-FLIGHT\s+REQUESTS\s+RESTARTS\s+UPTIME/,
    10_000,
  );
  assert.ok(up.output().includes(url), 'up prints the public URL');
  const ps = await runCli(['ps', '--config', fd.config]);
  assert.equal(ps.code, 0, ps.stderr);
  const lines = ps.stdout.trim().split('\n');
  const header = lines.findIndex((l) => l.startsWith('SERVICE'));
  assert.ok(header >= 0, ps.stdout);
  assert.match(
    lines[header]!,
    /SERVICE\s+REPLICA\s+PID\s+PORT\s+STATE\s+READY\s+IN-FLIGHT\s+REQUESTS\s+RESTARTS\s+UPTIME/,
  );
  const rows = lines.slice(header + 1);
  assert.equal(rows.length, 3, ps.stdout);
  for (const [i, row] of rows.entries()) {
    assert.match(
      row,
      new RegExp(`^api\\s+${i}\\s+\\d+\\s+\\d+\\s+running\\s+yes\\s+\\d+\\s+\\d+\\s+0\\s+\\d+s$`),
    );
  }
});

test('each replica gets PORT, a unique SHOAL_INSTANCE_ID, its index, the count and the service', async () => {
  const rows = await replicas();
  assert.equal(rows.length, 3);
  const ids = new Set<string>();
  for (const r of rows) {
    const env = JSON.parse((await httpRequest(`http://127.0.0.1:${r.port}/env`)).body) as Record<
      string,
      string
    >;
    assert.equal(env['PORT'], String(r.port));
    assert.equal(env['SHOAL_INSTANCE_ID'], r.id);
    assert.equal(env['SHOAL_REPLICA_INDEX'], String(r.replica));
    assert.equal(env['SHOAL_REPLICAS'], '3');
    assert.equal(env['SHOAL_SERVICE'], 'api');
    ids.add(env['SHOAL_INSTANCE_ID']!);
  }
  assert.equal(ids.size, 3);
  assert.notEqual(rows[0]!.port, Number(new URL(up.url('api')).port), 'replicas listen on private ports');
});

test('two rolling restarts under load (>= 150 req/s for 20 s): 0 failed requests, 0 5xx', async () => {
  const before = new Set((await replicas()).map((r) => r.id));
  const load = startLoad(up.url('api'), 200);
  const started = Date.now();
  await sleep(2000);
  for (let round = 1; round <= 2; round++) {
    const r = await runCli(['restart', 'api', '--config', fd.config]);
    assert.equal(r.code, 0, `restart ${round}: ${r.stdout}${r.stderr}`);
    assert.match(r.stdout, /rolling restart of api done/);
    assert.equal((r.stdout.match(/drained and stopped/g) ?? []).length, 3, r.stdout);
  }
  const rest = 20_000 - (Date.now() - started);
  if (rest > 0) await sleep(rest);
  const report = await load.stop();
  assert.equal(report.failed, 0, `failed requests: ${report.errors.join('; ')}`);
  assert.equal(report.status5xx, 0, `5xx: ${report.errors.join('; ')}`);
  assert.ok(report.rps >= 150, `load ran at ${report.rps.toFixed(0)} req/s`);
  assert.ok(Date.now() - started >= 20_000);
  const after = await replicas();
  assert.equal(after.length, 3);
  for (const r of after) {
    assert.equal(r.state, 'running');
    assert.ok(!before.has(r.id!), `replica ${r.replica} was replaced`);
    assert.equal(r.restarts, 2);
  }
  // Traffic reached the new replicas too.
  assert.ok(
    after.every((r) => (report.byInstance.get(r.id!) ?? 0) > 0),
    JSON.stringify([...report.byInstance]),
  );
});

test('kill -9 of a replica under load: 0 failed requests, back and ready within 5 s', async () => {
  const load = startLoad(up.url('api'), 200);
  await sleep(1500);
  const victim = (await replicas()).find((r) => r.replica === 1)!;
  assert.ok(victim.pid);
  process.kill(victim.pid, 'SIGKILL');
  const killedAt = Date.now();
  let back: ReplicaStatus | undefined;
  while (Date.now() - killedAt < 5000) {
    back = (await replicas()).find((r) => r.replica === 1 && r.pid !== victim.pid && r.ready);
    if (back) break;
    await sleep(100);
  }
  const took = Date.now() - killedAt;
  assert.ok(back, `replica 1 not back and ready within 5 s`);
  assert.equal(back.state, 'running');
  assert.notEqual(back.id, victim.id);
  await sleep(1500);
  const report = await load.stop();
  assert.equal(report.failed, 0, `failed requests: ${report.errors.join('; ')}`);
  assert.equal(report.status5xx, 0, `5xx: ${report.errors.join('; ')}`);
  assert.ok(report.ok > 300, `only ${report.ok} requests succeeded`);
  await up.waitFor(
    new RegExp(`${victim.id} \\(pid ${victim.pid}\\) exited unexpectedly \\(signal SIGKILL\\)`),
    1000,
  );
  assert.ok(took < 5000);
});

test('Ctrl-C stops everything: no replica process, no state file, no temp directory', async () => {
  const pids = (await replicas()).map((r) => r.pid!);
  assert.equal(pids.length, 3);
  const upPid = up.child.pid!;
  const code = await up.stop(30_000);
  assert.equal(code, 0, up.output().slice(-3000));
  assert.match(up.output(), /stopped; all replicas exited/);
  for (const pid of [...pids, ...seenPids, upPid])
    assert.equal(alive(pid), false, `pid ${pid} is still alive`);
  assert.equal(existsSync(join(fd.dir, '.shoal')), false, '.shoal state directory removed');
  assert.deepEqual(readdirSync(privateTmp), [], 'no temp directory left behind');
  const ps = await runCli(['ps', '--config', fd.config]);
  assert.equal(ps.code, 1);
  assert.match(ps.stderr, /No fleet is running/);
});
