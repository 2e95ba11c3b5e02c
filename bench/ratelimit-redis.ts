// Redis CPU per rate-limit decision: the fleet-wide capacity figure, since every instance's
// decisions run on the same Redis. Throughput ratios on a 2-core machine swing by +-10 % from run
// to run; this measures only what Redis itself spends, which repeats to a few percent.
//
// For each algorithm it has the limiter build real script calls (three limits per decision, as
// in bench:ratelimit: two per-subject keys and one shared context key), captures their bytes, then
// replays each call many times, pipelined on a raw socket, and reads Redis's own accounting
// (INFO commandstats, evalsha: usec and calls, as deltas; nothing is reset). Two shapes: a lone
// decision (what concurrency 1 sends) and a call of 32 decisions (what concurrency 64 sends).
// Replays hit the same keys inside one sub-window, i.e. the common admitted case. Rounds
// interleave the shapes and algorithms; the summary holds medians.
//
//   npm run bench:ratelimit-redis          (REDIS_URL defaults to redis://127.0.0.1:6379)
//   BENCH_ROUNDS=21 npm run bench:ratelimit-redis
import { randomBytes } from 'node:crypto';
import { once } from 'node:events';
import { connect } from 'node:net';
import { Redis } from 'ioredis';
import type { Algorithm } from '../src/ratelimit/types.js';
import { deleteByPrefix, median } from './common.js';
import { shipped } from './shipped.js';

const { createRateLimiter } = await shipped<typeof import('../src/ratelimit/index.js')>('ratelimit/index.js');

const REDIS_URL = process.env.REDIS_URL ?? 'redis://127.0.0.1:6379';
const ROUNDS = Number(process.env.BENCH_ROUNDS ?? 11);
const REPLAYS = Number(process.env.BENCH_REPLAYS ?? 2000);
const ALGORITHMS: Algorithm[] = ['sliding-window', 'gcra', 'fixed-window'];
const prefix = `bench:rlr:${randomBytes(3).toString('hex')}:`;

interface Shape {
  algorithm: Algorithm;
  decisions: number;
  wire: Buffer;
  replyBytes: number;
}

/** The bytes of the limiter's script calls for one lone decision and one call of 32. */
async function capture(redis: Redis, algorithm: Algorithm): Promise<Array<Omit<Shape, 'replyBytes'>>> {
  const big = 1_000_000_000;
  const limit = { limit: `${big}/min`, algorithm };
  const limiter = createRateLimiter({
    redis,
    prefix: `${prefix}${algorithm}:`,
    limits: { ip: limit, identity: limit, ctx: limit },
    deadlineMs: 2000,
    configPollMs: 60_000,
  });
  await limiter.start();
  const wires: Buffer[] = [];
  const target = redis as unknown as { sendCommand(cmd: { name: string; toWritable(): Buffer }): unknown };
  const send = target.sendCommand.bind(redis);
  target.sendCommand = (cmd) => {
    if (cmd.name === 'evalsha') wires.push(Buffer.from(cmd.toWritable()));
    return send(cmd);
  };
  // With nothing in flight the first decision goes alone; the other 64 wait on it and go as two
  // calls of 32 (see the limiter's call sizing).
  await Promise.all(
    Array.from({ length: 65 }, (_, i) => limiter.check({ ip: `s${i}`, identity: `s${i}`, ctx: 'all' })),
  );
  target.sendCommand = send;
  await limiter.close();
  if (wires.length !== 3) throw new Error(`expected 3 script calls, saw ${wires.length}`);
  return [
    { algorithm, decisions: 1, wire: wires[0]! },
    { algorithm, decisions: 32, wire: wires[1]! },
  ];
}

async function main() {
  const redis = new Redis(REDIS_URL, { enableAutoPipelining: false });
  const url = new URL(REDIS_URL);
  // The replay socket speaks plain RESP with no handshake.
  if (url.protocol !== 'redis:' || url.password) {
    throw new Error('bench:ratelimit-redis: needs a plain redis:// URL without a password');
  }
  const sock = connect(Number(url.port || 6379), url.hostname || '127.0.0.1');
  await once(sock, 'connect');

  // Replies arrive in order; each shape's reply has a fixed size, so counting bytes finds the end.
  let received = 0;
  let waiting: { bytes: number; done: () => void } | undefined;
  sock.on('data', (d: Buffer) => {
    received += d.length;
    if (waiting && received >= waiting.bytes) {
      const w = waiting;
      waiting = undefined;
      w.done();
    }
  });
  const replay = (wire: Buffer, bytes: number, times: number) =>
    new Promise<void>((done) => {
      received = 0;
      waiting = { bytes: bytes * times, done };
      sock.write(times === 1 ? wire : Buffer.concat(Array.from({ length: times }, () => wire)));
    });
  const replyBytes = async (wire: Buffer) => {
    received = 0;
    sock.write(wire);
    // one reply: a bulk string header line, then the payload and CRLF
    for (;;) {
      await new Promise((r) => setTimeout(r, 20));
      if (received > 0) return received;
    }
  };
  const evalsha = async () => {
    const info = (await redis.info('commandstats')) as string;
    const m = /cmdstat_evalsha:calls=(\d+),usec=(\d+)/.exec(info);
    return { calls: Number(m?.[1] ?? 0), usec: Number(m?.[2] ?? 0) };
  };

  const shapes: Shape[] = [];
  for (const algorithm of ALGORITHMS) {
    for (const s of await capture(redis, algorithm))
      shapes.push({ ...s, replyBytes: await replyBytes(s.wire) });
  }
  const perDecision = new Map<Shape, number[]>(shapes.map((s) => [s, []]));
  for (let round = 0; round < ROUNDS; round++) {
    for (const s of shapes) {
      const before = await evalsha();
      await replay(s.wire, s.replyBytes, REPLAYS);
      const after = await evalsha();
      const us = (after.usec - before.usec) / (after.calls - before.calls) / s.decisions;
      perDecision.get(s)!.push(us);
      console.log(
        JSON.stringify({
          measurement: 'redis_cpu',
          round,
          algorithm: s.algorithm,
          decisions_per_call: s.decisions,
          us_per_decision: Number(us.toFixed(3)),
        }),
      );
    }
  }

  await deleteByPrefix(redis, prefix);
  sock.destroy();
  redis.disconnect();

  const summary: Record<string, number> = { rounds: ROUNDS, replays: REPLAYS };
  for (const s of shapes) {
    const name = `redis_us_per_decision_${s.algorithm.replace('-window', '')}_${s.decisions === 1 ? 'single' : 'batch32'}`;
    summary[name] = Number(median(perDecision.get(s)!).toFixed(2));
  }
  console.log(JSON.stringify(summary));
}

main().catch((err) => {
  console.error(err);
  process.exit(1);
});
