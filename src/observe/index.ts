/**
 * Observability: structured logs with redaction, request ids, Prometheus metrics and optional
 * OpenTelemetry tracing. Framework glue lives in the adapters (`shoal/hono`: `observe()`).
 */
export {
  createLogDestination,
  createLogger,
  createRedactor,
  type LogDestination,
  type LogDestinationOptions,
  type Logger,
  type LoggerOptions,
  REDACT_KEY_NAMES,
  REDACT_KEY_SUBSTRINGS,
  type RedactorOptions,
} from './log.js';
export { createMetrics, type Metrics, type MetricsOptions, type Registry } from './metrics.js';
export {
  acceptRequestId,
  createRequestIdMinter,
  isWellFormedRequestId,
  REQUEST_ID_HEADER,
} from './request-id.js';
export {
  type RequestSpan,
  startTracing,
  TRACING_PACKAGES,
  type Tracing,
  type TracingOptions,
} from './tracing.js';
