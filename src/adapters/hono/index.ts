/**
 * Hono adapter: thin middleware and routes over the framework-agnostic capabilities.
 * Each capability's Hono glue lives in its own file here and is re-exported below.
 */

export { clientIpOf } from '../../enrich/client-ip.js';
export * from './health.js';
export * from './idempotency.js';
export * from './observe.js';
export * from './rate-limit-admin.js';
export * from './ratelimit.js';
export * from './serve.js';
