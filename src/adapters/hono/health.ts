/**
 * The four health probes as Hono routes, answered from the health object's cached results.
 */
import { type Context, Hono } from 'hono';
import { HEALTH_CONTENT_TYPE, type Health, type ProbeResponse } from '../../lifecycle/health.js';

function reply(c: Context, probe: ProbeResponse): Response {
  return c.body(JSON.stringify(probe.body), probe.status as 200, {
    'content-type': HEALTH_CONTENT_TYPE,
    // A cached probe answer would hide a state change from the balancer.
    'cache-control': 'no-store',
  });
}

/** Options for {@link healthRoutes}. */
export interface HealthRoutesOptions {
  /** Path prefix of the probes (default `/health`). */
  basePath?: string;
}

/**
 * A Hono sub-app serving `/health/live`, `/health/ready`, `/health/startup` and `/health/deep`.
 *
 * @example
 * app.route('/', healthRoutes(shoal.health));
 */
export function healthRoutes(health: Health, options: HealthRoutesOptions = {}): Hono {
  const base = (options.basePath ?? '/health').replace(/\/$/, '');
  const routes = new Hono();
  routes.get(`${base}/live`, (c) => reply(c, health.live()));
  routes.get(`${base}/ready`, (c) => reply(c, health.ready()));
  routes.get(`${base}/startup`, (c) => reply(c, health.startup()));
  routes.get(`${base}/deep`, (c) => reply(c, health.deep()));
  return routes;
}
