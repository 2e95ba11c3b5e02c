/**
 * `shoal/fleet`: the app model (`defineFleet`) and the engine behind `shoal up`, `shoal restart`
 * and `shoal ps`, for programmatic use.
 *
 * @example
 * import { defineFleet } from 'shoal/fleet';
 * export default defineFleet({ services: { api: { command: 'node dist/server.js', replicas: 3, port: 8080 } } });
 */

export {
  type Backend,
  type BackendStats,
  type Balancer,
  type BalancerEvent,
  type BalancerOptions,
  createBalancer,
  type Strategy,
} from './balancer/index.js';
export {
  type FleetControl,
  type FleetStateFile,
  type FleetStatus,
  type ResourceStatus,
  type RestartEvent,
  readStateFile,
  requestRestart,
  requestStatus,
  STATE_DIR,
  stateFilePath,
} from './control.js';
export { CONFIG_FILE_NAMES, findConfigFile, type LoadedConfig, loadFleetConfig } from './load-config.js';
export { createLogSink, type LogSink, type LogSinkOptions } from './logs.js';
export {
  type BalancingStrategy,
  type ConfigIssue,
  type Duration,
  defineFleet,
  type FleetConfig,
  type FleetModel,
  type ServiceConfig,
  type ServiceModel,
  splitCommand,
  validateFleet,
} from './model.js';
export { formatUptime, PS_COLUMNS, renderTable } from './ps.js';
export { rollingRestart } from './rolling.js';
export { PortAllocator, type ReplicaState, type ReplicaStatus, ServiceSupervisor } from './supervisor.js';
export { Fleet, type RunUpOptions, runUp, type StartFleetOptions, startFleet } from './up.js';
