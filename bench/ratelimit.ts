// Rate-limit benchmark: shoal (3 limits, one atomic EVALSHA) against the one-round-trip floor
// (raw ioredis EVALSHA of a one-key INCR+PEXPIRE script) and rate-limiter-flexible with the same
// 3 limits (sequential, Promise.all, RateLimiterUnion), at concurrency 1 and 64, same run,
// several interleaved rounds, medians. Also Redis memory per GCRA key and the share of hot-key
// rejections answered by the local block cache. One JSON line per measurement; the last line is
// the summary object.
//
// The machine's speed drifts within seconds (a c=1 round trip is mostly the two processes waking
// up, whose cost moves), so within a round the variants take turns in short slices (10 per
// variant, 100 ms each by default) and each round's sample for a variant is the sum of its
// slices; a ratio is the median over rounds of that round's ratio, i.e. of variants measured
// interleaved, never minutes apart.
//   npm run bench:ratelimit            (REDIS_URL defaults to redis://127.0.0.1:6379)
import { randomBytes } from 'node:crypto';
import { Redis } from 'ioredis';
import { RateLimiterRedis, RateLimiterUnion } from 'rate-limiter-flexible';
import { deleteByPrefix, median } from './common.js';
import { shipped } from './shipped.js';

const { createRateLimiter } = await shipped<typeof import('../src/ratelimit/index.js')>('ratelimit/index.js');
const { luaScript } =
  await shipped<typeof import('../src/stores/redis/scripts.js')>('stores/redis/scripts.js');

const REDIS_URL = process.env.REDIS_URL ?? 'redis://127.0.0.1:6379';
const ROUNDS = Number(process.env.BENCH_ROUNDS ?? 6);
const ROUND_MS = Number(process.env.BENCH_ROUND_MS ?? 1000);
const SLICES = Number(process.env.BENCH_SLICES ?? 10);
const SUBJECTS = 1000;
const run = randomBytes(3).toString('hex');
const prefix = `bench:rl:${run}:`;

type Op = (i: number) => Promise<unknown>;

interface Sample {
  opsPerSec: number;
  p50us: number;
  p99us: number;
}

const pct = (sorted: Float64Array, p: number) =>
  sorted[Math.min(sorted.length - 1, Math.floor(sorted.length * p))]!;

/** Latencies (ms) and busy time of one variant over a round's slices. */
interface Tally {
  lat: number[];
  elapsed: number;
}

function sample(t: Tally): Sample {
  const sorted = Float64Array.from(t.lat).sort();
  return {
    opsPerSec: (t.lat.length / t.elapsed) * 1000,
    p50us: pct(sorted, 0.5) * 1000,
    p99us: pct(sorted, 0.99) * 1000,
  };
}

/** Run `op` from `concurrency` workers for `ms`, adding latencies and busy time to `into`. */
async function measure(op: Op, concurrency: number, ms: number, into: Tally = { lat: [], elapsed: 0 }) {
  const lat = into.lat;
  let n = 0;
  const end = performance.now() + ms;
  const worker = async () => {
    while (performance.now() < end) {
      const i = n++;
      const t = performance.now();
      await op(i);
      lat.push(performance.now() - t);
    }
  };
  const t0 = performance.now();
  await Promise.all(Array.from({ length: concurrency }, worker));
  into.elapsed += performance.now() - t0;
}

async function main() {
  const clients: Redis[] = [];
  const client = () => {
    const c = new Redis(REDIS_URL, { enableAutoPipelining: false });
    clients.push(c);
    return c;
  };

  // floor
  const floorRedis = client();
  const incr = luaScript(
    'incr-pexpire-1',
    "local n = redis.call('INCR', KEYS[1]) if n == 1 then redis.call('PEXPIRE', KEYS[1], ARGV[1]) end return n",
  );
  await floorRedis.script('LOAD', incr.source);
  const floor: Op = (i) => floorRedis.evalsha(incr.sha, 1, `${prefix}floor:${i % SUBJECTS}`, 60_000);
  // For context, not a target: the same floor with ioredis's auto-pipelining, which coalesces the
  // commands of one event-loop turn into one write, as shoal coalesces concurrent decisions.
  const pipelined = new Redis(REDIS_URL, { enableAutoPipelining: true });
  clients.push(pipelined);
  const floorPipelined: Op = (i) => pipelined.evalsha(incr.sha, 1, `${prefix}floor:${i % SUBJECTS}`, 60_000);

  // rate-limiter-flexible: three limits, each a RateLimiterRedis
  const rlfRedis = client();
  const big = 1_000_000_000;
  const rlf = ['ip', 'identity', 'ctx'].map(
    (name) =>
      new RateLimiterRedis({
        storeClient: rlfRedis,
        keyPrefix: `${prefix}rlf:${name}`,
        points: big,
        duration: 60,
      }),
  );
  const union = new RateLimiterUnion(...rlf);
  const rlfSeq: Op = async (i) => {
    const k = `s${i % SUBJECTS}`;
    for (const l of rlf) await l.consume(k);
  };
  const rlfAll: Op = (i) => {
    const k = `s${i % SUBJECTS}`;
    return Promise.all(rlf.map((l) => l.consume(k)));
  };
  const rlfUnion: Op = (i) => union.consume(`s${i % SUBJECTS}`);

  // shoal: the same three limits in one decision
  const shoalRedis = client();
  const limiter = createRateLimiter({
    redis: shoalRedis,
    prefix: `${prefix}shoal:`,
    limits: { ip: `${big}/min`, identity: `${big}/min`, ctx: `${big}/min` },
    deadlineMs: 1000,
    configPollMs: 60_000,
  });
  await limiter.start();
  const shoal: Op = (i) => {
    const k = `s${i % SUBJECTS}`;
    return limiter.check({ ip: k, identity: k, ctx: 'all' });
  };
  await Promise.all([floor(0), floorPipelined(0), rlfSeq(0), shoal(0)]);

  const variants: Record<string, Op> = {
    floor,
    floor_autopipelined: floorPipelined,
    rlf_seq: rlfSeq,
    rlf_all: rlfAll,
    rlf_union: rlfUnion,
    shoal,
  };
  const samples: Record<string, Sample[]> = {};
  for (let round = 0; round < ROUNDS; round++) {
    for (const c of [1, 64]) {
      // A rotating order: each variant takes every position in turn, so none always follows
      // the same neighbour (a c=64 run leaves both cores warm for whatever comes next).
      const names = Object.keys(variants);
      const shift = round % names.length;
      const order = [...names.slice(shift), ...names.slice(0, shift)];
      for (const name of order) await measure(variants[name]!, c, 100); // warm-up
      const tallies = new Map(order.map((name) => [name, { lat: [], elapsed: 0 } as Tally]));
      for (let slice = 0; slice < SLICES; slice++) {
        for (const name of order) await measure(variants[name]!, c, ROUND_MS / SLICES, tallies.get(name));
      }
      for (const name of order) {
        const s = sample(tallies.get(name)!);
        const id = `${name}_c${c}`;
        const list = samples[id] ?? [];
        list.push(s);
        samples[id] = list;
        console.log(
          JSON.stringify({ measurement: 'throughput', variant: name, concurrency: c, round, ...s }),
        );
      }
    }
  }
  const med = (id: string, f: keyof Sample) => median(samples[id]!.map((s) => s[f]));

  // Redis memory per active (key, limit) for GCRA
  const memRedis = client();
  const gcra = createRateLimiter({
    redis: memRedis,
    prefix: 'rl:',
    limits: { u: { limit: '100/min', algorithm: 'gcra' } },
    configPollMs: 60_000,
  });
  const memSubjects = Array.from({ length: 500 }, (_, i) => `${run}${i}`);
  await Promise.all(memSubjects.map((s) => gcra.check({ u: s })));
  const sizes = await Promise.all(
    memSubjects.map(
      (s) => memRedis.call('MEMORY', 'USAGE', gcra.keys.state('u', s), 'SAMPLES', '0') as Promise<number>,
    ),
  );
  const bytesPerGcraKey = sizes.reduce((a, b) => a + b, 0) / sizes.length;
  const sampleKey = gcra.keys.state('u', memSubjects[0]!);
  console.log(
    JSON.stringify({ measurement: 'memory', algorithm: 'gcra', key: sampleKey, bytes: bytesPerGcraKey }),
  );
  const slidingSizes: number[] = [];
  const sliding = createRateLimiter({
    redis: memRedis,
    prefix: 'rl:',
    limits: { w: '100/min' },
    configPollMs: 60_000,
  });
  await Promise.all(memSubjects.map((s) => sliding.check({ w: s })));
  for (const s of memSubjects.slice(0, 100)) {
    slidingSizes.push(
      (await memRedis.call('MEMORY', 'USAGE', sliding.keys.state('w', s), 'SAMPLES', '0')) as number,
    );
  }
  const bytesPerSlidingKey = slidingSizes.reduce((a, b) => a + b, 0) / slidingSizes.length;
  console.log(
    JSON.stringify({ measurement: 'memory', algorithm: 'sliding-window', bytes: bytesPerSlidingKey }),
  );
  await memRedis.del(...memSubjects.flatMap((s) => [gcra.keys.state('u', s), sliding.keys.state('w', s)]));

  // hot key: share of rejections answered without Redis
  const hotRedis = client();
  const hot = createRateLimiter({
    redis: hotRedis,
    prefix: `${prefix}hot:`,
    limits: { ip: '100/min' },
    configPollMs: 60_000,
  });
  let rejected = 0;
  let cached = 0;
  await measure(
    async () => {
      const d = await hot.check({ ip: 'hot' });
      if (!d.allowed) {
        rejected++;
        if (d.source === 'cache') cached++;
      }
    },
    64,
    ROUND_MS,
  );
  const localRejectShare = rejected === 0 ? 0 : cached / rejected;
  console.log(
    JSON.stringify({ measurement: 'hot_key', rejected, answered_locally: cached, share: localRejectShare }),
  );

  // cleanup
  await deleteByPrefix(floorRedis, prefix);
  for (const l of [limiter, gcra, sliding, hot]) await l.close();
  for (const c of clients) c.disconnect();

  // per round, then the median: both variants of a round were measured interleaved
  const ratio = (a: string, b: string) =>
    Number(median(samples[a]!.map((s, r) => s.opsPerSec / samples[b]![r]!.opsPerSec)).toFixed(3));
  const summary = {
    rounds: ROUNDS,
    floor_ops_c1: Math.round(med('floor_c1', 'opsPerSec')),
    shoal_ops_c1: Math.round(med('shoal_c1', 'opsPerSec')),
    rlf_seq_ops_c1: Math.round(med('rlf_seq_c1', 'opsPerSec')),
    floor_ops_c64: Math.round(med('floor_c64', 'opsPerSec')),
    floor_autopipelined_ops_c64: Math.round(med('floor_autopipelined_c64', 'opsPerSec')),
    shoal_ops_c64: Math.round(med('shoal_c64', 'opsPerSec')),
    shoal_vs_floor_c1: ratio('shoal_c1', 'floor_c1'),
    shoal_vs_floor_c64: ratio('shoal_c64', 'floor_c64'),
    shoal_vs_floor_autopipelined_c64: ratio('shoal_c64', 'floor_autopipelined_c64'),
    shoal_vs_rlf_seq_c1: ratio('shoal_c1', 'rlf_seq_c1'),
    shoal_vs_rlf_all_c1: ratio('shoal_c1', 'rlf_all_c1'),
    shoal_vs_rlf_union_c1: ratio('shoal_c1', 'rlf_union_c1'),
    shoal_vs_rlf_seq_c64: ratio('shoal_c64', 'rlf_seq_c64'),
    shoal_vs_rlf_union_c64: ratio('shoal_c64', 'rlf_union_c64'),
    shoal_p99_us_c1: Math.round(med('shoal_c1', 'p99us')),
    floor_p99_us_c1: Math.round(med('floor_c1', 'p99us')),
    local_reject_share: Number(localRejectShare.toFixed(4)),
    bytes_per_gcra_key: Math.round(bytesPerGcraKey),
    bytes_per_sliding_key: Math.round(bytesPerSlidingKey),
  };
  console.log(JSON.stringify(summary));
}

main().catch((err) => {
  console.error(err);
  process.exit(1);
});
