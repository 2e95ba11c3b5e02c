/**
 * Shoal: run a Node service as N identical instances and stay correct.
 * Each capability has its own subpath (`shoal/ratelimit`, `shoal/hono`, ...); the root re-exports
 * the pieces every service needs at startup.
 */
export { CONFIG_VARIABLES, loadConfig, parseDuration, type ShoalConfig } from './config/index.js';
export * from './errors.js';
export * from './runtime.js';
