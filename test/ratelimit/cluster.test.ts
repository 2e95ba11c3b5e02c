// A real 3-master Redis Cluster on loopback ports, started from redis-server for this file.
import assert from 'node:assert/strict';
import { type ChildProcess, spawn, spawnSync } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, test } from 'node:test';
import { Cluster, Redis } from 'ioredis';
import { createRateLimiter, keySlot, type RateLimiter } from '../../src/ratelimit/index.js';
import { freePort } from '../helpers/private-redis.js';

const procs: ChildProcess[] = [];
const dirs: string[] = [];
const ports: number[] = [];
let cluster: Cluster;
const limiters: RateLimiter[] = [];

async function waitFor(cond: () => Promise<boolean>, ms: number, what: string) {
  const end = Date.now() + ms;
  while (!(await cond().catch(() => false))) {
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 100));
  }
}

before(async () => {
  for (let i = 0; i < 3; i++) {
    const port = await freePort();
    const dir = mkdtempSync(join(tmpdir(), 'shoal-rl-cluster-'));
    ports.push(port);
    dirs.push(dir);
    procs.push(
      spawn(
        'redis-server',
        [
          '--port',
          String(port),
          '--bind',
          '127.0.0.1',
          '--cluster-enabled',
          'yes',
          '--cluster-config-file',
          join(dir, 'nodes.conf'),
          '--save',
          '',
          '--appendonly',
          'no',
          '--dir',
          dir,
        ],
        { stdio: 'ignore' },
      ),
    );
  }
  for (const port of ports) {
    await waitFor(
      async () => {
        const r = new Redis({ port, host: '127.0.0.1', lazyConnect: true, retryStrategy: () => null });
        r.on('error', () => {});
        try {
          await r.connect();
          return (await r.ping()) === 'PONG';
        } finally {
          r.disconnect();
        }
      },
      5000,
      `redis-server on ${port}`,
    );
  }
  const create = spawnSync(
    'redis-cli',
    [
      '--cluster',
      'create',
      ...ports.map((p) => `127.0.0.1:${p}`),
      '--cluster-replicas',
      '0',
      '--cluster-yes',
    ],
    { encoding: 'utf8', timeout: 20_000 },
  );
  assert.equal(create.status, 0, create.stdout + create.stderr);
  await waitFor(
    async () => {
      const r = new Redis({ port: ports[0], host: '127.0.0.1' });
      try {
        return /cluster_state:ok/.test((await r.call('CLUSTER', 'INFO')) as string);
      } finally {
        r.disconnect();
      }
    },
    10_000,
    'cluster_state:ok',
  );
  cluster = new Cluster(ports.map((port) => ({ host: '127.0.0.1', port })));
  await waitFor(async () => (await cluster.ping()) === 'PONG', 5000, 'cluster client');
});

after(async () => {
  for (const l of limiters) await l.close();
  cluster?.disconnect();
  for (const p of procs) p.kill('SIGKILL');
  for (const d of dirs) rmSync(d, { recursive: true, force: true });
});

function make(keyMode: 'shared' | 'spread') {
  const l = createRateLimiter({
    redis: cluster,
    keyMode,
    prefix: `c${limiters.length}:`,
    deadlineMs: 2000,
    blockCacheSize: 0,
    limits: {
      a: '10/min',
      b: { limit: '10/min', algorithm: 'gcra' },
      c: { limit: '2/min', algorithm: 'fixed-window' },
    },
  });
  limiters.push(l);
  return l;
}

for (const keyMode of ['shared', 'spread'] as const) {
  test(`cluster (${keyMode} keys): K=3 where the third rejects charges nothing; 500 parallel decisions stay all-or-nothing`, async () => {
    const l = make(keyMode);
    const s = { a: 'u1', b: 'u1', c: 'u1' };
    const slots = new Set(['a', 'b', 'c'].map((n) => keySlot(l.keys.state(n, 'u1'))));
    assert.equal(slots.size, keyMode === 'shared' ? 1 : 3, 'key layout does not match the key mode');
    assert.equal((await l.check(s)).allowed, true);
    assert.equal((await l.check(s)).allowed, true);
    for (let i = 0; i < 4; i++) {
      const d = await l.check(s);
      assert.equal(d.allowed, false);
      assert.equal(d.rejectedBy, 'c');
    }
    assert.equal((await l.inspect('a', 'u1')).remaining, 8);
    assert.equal((await l.inspect('b', 'u1')).remaining, 8);
    const ds = await Promise.all(
      Array.from({ length: 500 }, () => l.check({ a: 'hot', b: 'hot' }, { cost: 1 })),
    );
    // a and b both allow 10; every decision that admits charges both, none that rejects charges either
    assert.equal(ds.filter((d) => d.allowed).length, 10);
    assert.equal((await l.inspect('a', 'hot')).remaining, 0);
    assert.equal((await l.inspect('b', 'hot')).remaining, 0);
  });
}
