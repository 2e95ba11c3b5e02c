// A replica that exits at startup every time is marked crash-looping (and no longer restarted)
// while the others keep serving; a dependent service gets its dependency's URLs and the
// resource URLs.
import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';
import { type FleetStateFile, requestStatus } from '../../src/fleet/control.js';
import type { ReplicaStatus } from '../../src/fleet/supervisor.js';
import { REDIS_URL } from '../helpers/stores.js';
import {
  alive,
  FIXTURE,
  type FleetDir,
  fleetDir,
  httpRequest,
  sleep,
  startUp,
  type UpProcess,
} from './helpers.js';

let fd: FleetDir;
let up: UpProcess;
let startedAt = 0;
let upAt = 0;
const seenPids = new Set<number>();

async function rows(service: string): Promise<ReplicaStatus[]> {
  const status = await requestStatus(up.state as unknown as FleetStateFile);
  const r = status.services.find((s) => s.name === service)!.replicas;
  for (const x of r) if (x.pid !== undefined) seenPids.add(x.pid);
  return r;
}

before(async () => {
  fd = fleetDir({
    resources: { redis: true },
    services: {
      api: {
        command: `node ${FIXTURE}`,
        replicas: 3,
        port: 0,
        env: { FIXTURE_CRASH_INDEX: 1 },
        health: { interval: '500ms' },
      },
      web: { command: ['node', FIXTURE], port: 0, dependsOn: ['api', 'redis'] },
    },
  });
  startedAt = Date.now();
  up = await startUp(fd, { env: { REDIS_URL }, timeoutMs: 60_000 });
  upAt = Date.now();
});

after(async () => {
  await up?.stop(10_000);
  for (const pid of seenPids) if (alive(pid)) process.kill(pid, 'SIGKILL');
  fd?.cleanup();
});

test('a replica that exits at startup every time is reported crash-looping within 30 s', async () => {
  await up.waitFor(/api-1 is crash-looping: 5 crashes within 30s/, 30_000 - (Date.now() - startedAt));
  assert.ok(Date.now() - startedAt < 30_000);
  const api = await rows('api');
  const looping = api.find((r) => r.replica === 1)!;
  assert.equal(looping.state, 'crash-looping');
  assert.equal(looping.ready, false);
  assert.equal(looping.pid, undefined);
  assert.equal(looping.restarts, 4, 'first start + 4 restarts = 5 crashes');
  assert.match(looping.lastExit ?? '', /code 1/);
  for (const r of api.filter((x) => x.replica !== 1)) {
    assert.equal(r.state, 'running');
    assert.equal(r.ready, true);
  }
  assert.ok(upAt - startedAt < 60_000);
});

test('the other replicas keep serving and the crash-looping one is not restarted again', async () => {
  const url = up.url('api');
  const seen = new Map<number, number>();
  for (let i = 0; i < 60; i++) {
    const r = await httpRequest(`${url}/whoami`);
    assert.equal(r.status, 200, r.body);
    const { index } = JSON.parse(r.body) as { index: number };
    seen.set(index, (seen.get(index) ?? 0) + 1);
  }
  assert.deepEqual([...seen.keys()].sort(), [0, 2]);
  const before = (await rows('api')).find((r) => r.replica === 1)!;
  await sleep(2500);
  const later = (await rows('api')).find((r) => r.replica === 1)!;
  assert.equal(later.state, 'crash-looping');
  assert.equal(later.restarts, before.restarts);
  assert.equal((up.output().match(/replica 1 crashing at startup on purpose/g) ?? []).length, 5);
  const ps = up.output();
  assert.match(ps, /api\s+1\s+-\s+-\s+crash-looping\s+no/);
});

test('a dependent service gets <NAME>_URL, services__<name>__http__0 and the resource URLs', async () => {
  const [web] = await rows('web');
  assert.ok(web?.port);
  const env = JSON.parse((await httpRequest(`http://127.0.0.1:${web.port}/env`)).body) as Record<
    string,
    string
  >;
  assert.equal(env['API_URL'], up.url('api'));
  assert.equal(env['services__api__http__0'], up.url('api'));
  assert.equal(env['REDIS_URL'], REDIS_URL);
  assert.equal(env['SHOAL_SERVICE'], 'web');
  assert.equal(env['SHOAL_REPLICAS'], '1');
  const whoami = await httpRequest(`${up.url('web')}/whoami`);
  assert.equal(whoami.status, 200);
});
