/**
 * `shoal restart <service>`: a rolling restart of one service, replica by replica, so the service
 * always has ready replicas and no request is dropped (the per-slot steps live in the supervisor,
 * which owns the processes; this picks the service and reports).
 */
import { ShoalError } from '../errors.js';
import type { ServiceSupervisor } from './supervisor.js';

/**
 * Roll `service`'s replicas one at a time. Throws `fleet.unknown_service` naming the services that
 * exist, `fleet.restart_in_progress` if a roll of that service is running, or `fleet.restart_failed`
 * if a new replica does not become ready (the old one then keeps serving).
 *
 * @example
 * await rollingRestart(supervisors, 'api', (m) => logs.fleet(m));
 */
export async function rollingRestart(
  supervisors: ReadonlyMap<string, ServiceSupervisor>,
  service: string,
  progress: (message: string) => void,
): Promise<void> {
  const sup = supervisors.get(service);
  if (!sup) {
    const known = [...supervisors.keys()];
    throw new ShoalError(
      'fleet.unknown_service',
      `Unknown service ${JSON.stringify(service)}; this fleet runs: ${known.join(', ') || '(none)'}`,
    );
  }
  const started = Date.now();
  progress(`rolling restart of ${service}: ${sup.service.replicas} replica(s), one at a time`);
  await sup.rollingRestart(progress);
  progress(`rolling restart of ${service} done in ${((Date.now() - started) / 1000).toFixed(1)}s`);
}
