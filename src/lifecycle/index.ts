/**
 * `shoal/lifecycle`: health probes and graceful shutdown for one instance.
 *
 * @example
 * import { createHealth, createShutdown, redisCheck } from 'shoal/lifecycle';
 */
export {
  type CheckOptions,
  type EventLoopCheckOptions,
  eventLoopCheck,
  postgresCheck,
  redisCheck,
} from './checks.js';
export {
  type CheckState,
  createHealth,
  HEALTH_CONTENT_TYPE,
  type Health,
  type HealthOptions,
  type HealthStatus,
  type ProbeResponse,
} from './health.js';
export { createShutdown, type InFlightRequest, type Shutdown, type ShutdownOptions } from './shutdown.js';
