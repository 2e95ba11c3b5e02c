// Entry point of one orders replica: `node examples/orders/dist/server.js`.
// The fleet sets PORT, SHOAL_INSTANCE_ID, REDIS_URL, DATABASE_URL, ...; see ../shoal.config.ts.
import { createShoal, runMain } from 'shoal';
import { envRate, httpRateLimits, serve } from 'shoal/hono';
import { createIdempotency, postgresIdempotencyStore } from 'shoal/idempotency';
import { migrateToolkit, runMigrations } from 'shoal/postgres';
import { buildApp } from './app.js';

await runMain(async () => {
  const runtime = createShoal({ service: process.env.SHOAL_SERVICE ?? 'orders', version: '0.1.0' });
  const env = process.env;
  // Malformed limits fail here, at startup, naming the variable.
  const limits = {
    ip: envRate(env, 'ORDERS_LIMIT_IP', '200/min'),
    identity: envRate(env, 'ORDERS_LIMIT_IDENTITY', '100/min'),
    writes: envRate(env, 'ORDERS_LIMIT_WRITES', '500/min'),
  };
  const pool = runtime.pg();
  const redis = runtime.redis();

  // N replicas start together; the advisory lock in the runner makes these run once.
  await migrateToolkit(pool);
  await runMigrations(pool, { dir: new URL('../migrations/', import.meta.url), table: 'orders_migrations' });

  const rateLimits = httpRateLimits({
    redis,
    registry: runtime.metrics.registry,
    logger: runtime.log,
    replicas: runtime.config.replicas,
    // Separate fleets sharing one Redis (tests, staging next to dev) keep separate counters.
    prefix: env.ORDERS_KEY_PREFIX ?? 'orders:rl:',
    ip: limits.ip,
    identity: limits.identity,
    writes: { context: 'orders-write', limit: limits.writes },
    trustedProxies: runtime.config.trustedProxies,
    adminToken: runtime.config.adminToken,
  });
  await rateLimits.start();
  runtime.shutdown.register('rate-limits', () => rateLimits.close());

  const idem = createIdempotency({
    store: postgresIdempotencyStore({ pool }),
    registry: runtime.metrics.registry,
    logger: runtime.log,
  });

  const app = buildApp({ runtime, rateLimits, idempotency: idem });
  const { port } = await serve(app as never, runtime);
  runtime.log.info({ port, limits }, 'orders listening');
});
