// Idempotency overhead on loopback HTTP, same process, same run:
//   added latency  = /idem (middleware, fresh key each request, Redis store) minus /plain (same handler, no middleware)
//   floors         = two bare EVALSHA round trips on their own, and inside the same route (/floor)
//   replay ratio   = replay of a stored response / a handler doing one PostgreSQL INSERT (no middleware)
// Several interleaved rounds; per round p50/p99; the reported figures are medians over rounds.
// Last line: {"added_p50_ms", "added_p99_ms", "replay_vs_handler_p50", ...}.
import { randomUUID } from 'node:crypto';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { serve } from '@hono/node-server';
import { Hono } from 'hono';
import pg from 'pg';
import { Registry } from 'prom-client';
import type { IdempotencyVariables } from '../src/adapters/hono/idempotency.js';
import type { PgClient } from '../src/stores/postgres/pool.js';
import { deleteByPrefix } from './common.js';
import { shipped } from './shipped.js';

const { idempotency } = await shipped<typeof import('../src/adapters/hono/idempotency.js')>(
  'adapters/hono/idempotency.js',
);
const { createIdempotency } =
  await shipped<typeof import('../src/idempotency/engine.js')>('idempotency/engine.js');
const { postgresIdempotencyStore } = await shipped<typeof import('../src/idempotency/postgres-store.js')>(
  'idempotency/postgres-store.js',
);
const { redisIdempotencyStore } = await shipped<typeof import('../src/idempotency/redis-store.js')>(
  'idempotency/redis-store.js',
);
const { migrateToolkit } = await shipped<typeof import('../src/stores/postgres/migrate.js')>(
  'stores/postgres/migrate.js',
);
const { createRedis, waitForRedis } =
  await shipped<typeof import('../src/stores/redis/client.js')>('stores/redis/client.js');
const { luaScript, runScript } =
  await shipped<typeof import('../src/stores/redis/scripts.js')>('stores/redis/scripts.js');

const REDIS_URL = process.env.REDIS_URL ?? 'redis://127.0.0.1:6379';
const DATABASE_URL = process.env.DATABASE_URL ?? 'postgres://postgres@127.0.0.1:5432/postgres';
const ROUNDS = Number(process.env.ROUNDS ?? 5);
const N = Number(process.env.N ?? 400);
const prefix = `bench:idem:${randomUUID().slice(0, 8)}:`;
const schemaName = `bench_idem_${randomUUID().slice(0, 8).replace(/-/g, '')}`;

const admin = new pg.Client({ connectionString: DATABASE_URL });
await admin.connect();
await admin.query(`CREATE SCHEMA ${schemaName}`);
const url = new URL(DATABASE_URL);
url.searchParams.set('options', `-c search_path=${schemaName}`);
const pool = new pg.Pool({ connectionString: url.toString(), max: 4 });
await pool.query('CREATE TABLE orders (id serial PRIMARY KEY, sku text NOT NULL, qty integer NOT NULL)');
await migrateToolkit(pool);

const redis = createRedis(REDIS_URL);
await waitForRedis(redis);
const registry = new Registry(); // metrics on, as in production
const redisIdem = createIdempotency({ store: redisIdempotencyStore({ redis, prefix }), registry });
const pgIdem = createIdempotency<PgClient>({ store: postgresIdempotencyStore({ pool }), registry });

const app = new Hono<{ Variables: IdempotencyVariables<PgClient> }>();
const small = async (c: {
  req: { json: () => Promise<unknown> };
  json: (o: object, s?: number) => Response;
}) => {
  const body = (await c.req.json()) as { sku: string; qty: number };
  return c.json({ ok: true, sku: body.sku, qty: body.qty }, 201);
};
app.post('/plain', (c) => small(c));
app.post('/idem', idempotency(redisIdem), (c) => small(c));
// The floor inside a request: the same route behind a middleware that only makes two bare EVALSHA
// round trips, one before and one after the handler, the shape of claim and complete.
const floorScript = luaScript('bench-floor', "return redis.call('EXISTS', KEYS[1])");
app.post(
  '/floor',
  async (_c, next) => {
    await runScript(redis, floorScript, [`${prefix}floor`], []);
    await next();
    await runScript(redis, floorScript, [`${prefix}floor`], []);
  },
  (c) => small(c),
);
const insert = 'INSERT INTO orders (sku, qty) VALUES ($1, $2) RETURNING id';
app.post('/pg-plain', async (c) => {
  const body = await c.req.json<{ sku: string; qty: number }>();
  const { rows } = await pool.query<{ id: number }>(insert, [body.sku, body.qty]);
  return c.json({ id: rows[0]!.id, sku: body.sku }, 201);
});
app.post('/pg-idem', idempotency(redisIdem), async (c) => {
  const body = await c.req.json<{ sku: string; qty: number }>();
  const { rows } = await pool.query<{ id: number }>(insert, [body.sku, body.qty]);
  return c.json({ id: rows[0]!.id, sku: body.sku }, 201);
});
app.post('/pg-tx', idempotency(pgIdem), async (c) => {
  const body = await c.req.json<{ sku: string; qty: number }>();
  const tx = await c.var.idempotency.tx();
  const { rows } = await tx.query<{ id: number }>(insert, [body.sku, body.qty]);
  return c.json({ id: rows[0]!.id, sku: body.sku }, 201);
});

const server = serve({ fetch: app.fetch, port: 0, hostname: '127.0.0.1' });
await new Promise<void>((r) => (server.listening ? r() : server.once('listening', () => r())));
const port = (server.address() as AddressInfo).port;
const agent = new http.Agent({ keepAlive: true, maxSockets: 1 });

const unexpected: Record<string, number> = {};

function request(path: string, body: string, key?: string): Promise<number> {
  return new Promise((resolve, reject) => {
    const headers: Record<string, string> = {
      'content-type': 'application/json',
      'content-length': String(Buffer.byteLength(body)),
    };
    if (key) headers['idempotency-key'] = `"${key}"`;
    const started = performance.now();
    const req = http.request({ host: '127.0.0.1', port, path, method: 'POST', agent, headers }, (res) => {
      res.resume();
      res.on('end', () => {
        // A 503 (store past its deadline on an overloaded host) is counted, not fatal.
        if (res.statusCode !== 201)
          unexpected[`${path} ${res.statusCode}`] = (unexpected[`${path} ${res.statusCode}`] ?? 0) + 1;
        resolve(performance.now() - started);
      });
    });
    req.on('error', reject);
    req.end(body);
  });
}

const pct = (xs: number[], p: number) => {
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.min(s.length - 1, Math.floor((p / 100) * s.length))]!;
};
const median = (xs: number[]) => pct(xs, 50);
const body = JSON.stringify({ sku: 'apple', qty: 3, note: 'benchmark order with a little text in it' });

type Case = { name: string; run: (i: number) => Promise<number> };
const replayKeyRedis = randomUUID();
const replayKeyPg = randomUUID();
await request('/pg-idem', body, replayKeyRedis);
await request('/pg-tx', body, replayKeyPg);
// The floor: two bare EVALSHA round trips (what claim + complete cannot avoid), no HTTP.
const floor = async () => {
  const started = performance.now();
  await runScript(redis, floorScript, [`${prefix}floor`], []);
  await runScript(redis, floorScript, [`${prefix}floor`], []);
  return performance.now() - started;
};
const cases: Case[] = [
  { name: 'redis_two_round_trips', run: floor },
  { name: 'plain', run: () => request('/plain', body) },
  { name: 'plain_two_round_trips', run: () => request('/floor', body, randomUUID()) },
  { name: 'idem_first', run: () => request('/idem', body, randomUUID()) },
  { name: 'pg_handler', run: () => request('/pg-plain', body) },
  { name: 'replay_redis', run: () => request('/pg-idem', body, replayKeyRedis) },
  { name: 'replay_pg', run: () => request('/pg-tx', body, replayKeyPg) },
  { name: 'pg_tx_first', run: () => request('/pg-tx', body, randomUUID()) },
];

// Warm up JIT, connections and script caches.
for (const c of cases) for (let i = 0; i < 200; i++) await c.run(i);

const perRound: Record<string, { p50: number[]; p99: number[] }> = {};
for (const c of cases) perRound[c.name] = { p50: [], p99: [] };
const added50: number[] = [];
const floorIn50: number[] = [];
const added99: number[] = [];
const ratio: number[] = [];
for (let round = 0; round < ROUNDS; round++) {
  const samples: Record<string, number[]> = {};
  for (const c of cases) samples[c.name] = [];
  // Interleave the cases request by request so drift in machine load hits all of them alike.
  for (let i = 0; i < N; i++) for (const c of cases) samples[c.name]!.push(await c.run(i));
  const stat = (n: string) => ({ p50: median(samples[n]!), p99: pct(samples[n]!, 99) });
  for (const c of cases) {
    const s = stat(c.name);
    perRound[c.name]!.p50.push(s.p50);
    perRound[c.name]!.p99.push(s.p99);
  }
  const a50 = stat('idem_first').p50 - stat('plain').p50;
  const a99 = stat('idem_first').p99 - stat('plain').p99;
  const r = stat('replay_redis').p50 / stat('pg_handler').p50;
  added50.push(a50);
  floorIn50.push(stat('plain_two_round_trips').p50 - stat('plain').p50);
  added99.push(a99);
  ratio.push(r);
  console.log(
    JSON.stringify({
      round,
      n: N,
      ...Object.fromEntries(cases.map((c) => [`${c.name}_p50_ms`, +stat(c.name).p50.toFixed(4)])),
      added_p50_ms: +a50.toFixed(4),
      added_p99_ms: +a99.toFixed(4),
      replay_vs_handler_p50: +r.toFixed(4),
    }),
  );
}
for (const c of cases) {
  console.log(
    JSON.stringify({
      case: c.name,
      p50_ms: +median(perRound[c.name]!.p50).toFixed(4),
      p99_ms: +median(perRound[c.name]!.p99).toFixed(4),
    }),
  );
}

server.close();
agent.destroy();
await deleteByPrefix(redis, prefix);
redis.disconnect();
await pool.end();
await admin.query(`DROP SCHEMA ${schemaName} CASCADE`);
await admin.end();

const replayPgRatio = median(perRound.replay_pg!.p50) / median(perRound.pg_handler!.p50);
console.log(
  JSON.stringify({
    added_p50_ms: +median(added50).toFixed(4),
    added_p99_ms: +median(added99).toFixed(4),
    replay_vs_handler_p50: +median(ratio).toFixed(4),
    replay_pg_store_vs_handler_p50: +replayPgRatio.toFixed(4),
    plain_p50_ms: +median(perRound.plain!.p50).toFixed(4),
    idem_first_p50_ms: +median(perRound.idem_first!.p50).toFixed(4),
    // The floor: claim + complete cannot cost less than two Redis round trips on this machine.
    redis_two_round_trips_p50_ms: +median(perRound.redis_two_round_trips!.p50).toFixed(4),
    redis_two_round_trips_p99_ms: +median(perRound.redis_two_round_trips!.p99).toFixed(4),
    added_minus_floor_p50_ms: +(median(added50) - median(perRound.redis_two_round_trips!.p50)).toFixed(4),
    // What two bare round trips add to the same route inside a request (event-loop wake-ups included).
    floor_in_request_p50_ms: +median(floorIn50).toFixed(4),
    added_minus_floor_in_request_p50_ms: +(median(added50) - median(floorIn50)).toFixed(4),
    pg_tx_first_vs_handler_p50: +(
      median(perRound.pg_tx_first!.p50) / median(perRound.pg_handler!.p50)
    ).toFixed(4),
    unexpected_statuses: unexpected,
    rounds: ROUNDS,
    n_per_round: N,
  }),
);
