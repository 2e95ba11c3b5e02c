import type { Registry } from 'prom-client';

/**
 * Return the metric already registered under `name`, or make it on `registry`. Two instances of
 * a capability sharing one registry then share instruments instead of tripping prom-client's
 * duplicate-name error. Without a registry the metric is made unregistered (counts go nowhere).
 *
 * @example
 * const hits = registeredMetric(registry, 'shoal_x_total', (registers) =>
 *   new Counter({ name: 'shoal_x_total', help: 'x', registers }));
 */
export function registeredMetric<T>(
  registry: Registry | undefined,
  name: string,
  make: (registers: Registry[]) => T,
): T {
  const existing = registry?.getSingleMetric(name);
  if (existing) return existing as unknown as T;
  return make(registry ? [registry] : []);
}
