/**
 * Small interfaces that capabilities depend on instead of concrete stores or frameworks.
 * A capability imports from here, never from an adapter or a concrete store.
 */

/** The subset of a pino logger that the toolkit uses; any pino logger satisfies it. */
export interface Logger {
  info(obj: object, msg?: string): void;
  warn(obj: object, msg?: string): void;
  error(obj: object, msg?: string): void;
  debug(obj: object, msg?: string): void;
  child(bindings: Record<string, unknown>): Logger;
}

/**
 * A logger that drops everything: the default when the user passes none.
 *
 * @example
 * const log = options.logger ?? silentLogger;
 */
export const silentLogger: Logger = {
  info() {},
  warn() {},
  error() {},
  debug() {},
  child() {
    return silentLogger;
  },
};

/** Something the shutdown controller can close, in reverse registration order. */
export interface Closeable {
  close(): Promise<void> | void;
}

/** The result of one health check run. */
export interface CheckResult {
  ok: boolean;
  /** Free-form detail shown on /health/deep (latency is measured by the runner). */
  detail?: Record<string, unknown>;
  /** A human-readable reason when not ok. */
  message?: string;
}

/** A named health check; `required` checks gate readiness, optional ones only report. */
export interface HealthCheck {
  name: string;
  required: boolean;
  run(signal: AbortSignal): Promise<CheckResult>;
}
