/**
 * Responses the balancer itself produces (413, 502, 503, 504, 400...), as raw HTTP/1.1 bytes with
 * an RFC 9457 problem+json body, because the client side is a plain socket, not a node:http server.
 */
import { PROBLEM_CONTENT_TYPE, problem } from '../../errors.js';

/** The problem kinds the balancer emits; each has a stable `type` slug. */
export type BalancerProblem =
  | 'bad-request'
  | 'header-too-large'
  | 'not-implemented'
  | 'payload-too-large'
  | 'bad-gateway'
  | 'no-ready-replica'
  | 'gateway-timeout';

const SPEC: Record<BalancerProblem, [number, string]> = {
  'bad-request': [400, 'Bad Request'],
  'header-too-large': [431, 'Request Header Fields Too Large'],
  'not-implemented': [501, 'Not Implemented'],
  'payload-too-large': [413, 'Content Too Large'],
  'bad-gateway': [502, 'Bad Gateway'],
  'no-ready-replica': [503, 'Service Unavailable'],
  'gateway-timeout': [504, 'Gateway Timeout'],
};

/**
 * Build a complete HTTP/1.1 response carrying a problem+json body.
 *
 * @example
 * socket.write(problemBytes('no-ready-replica', 'no ready replica for "api"', { requestId: 'r1', close: false, retryAfter: 1 }));
 */
export function problemBytes(
  kind: BalancerProblem,
  detail: string,
  opts: { requestId?: string; close: boolean; retryAfter?: number; service?: string },
): string {
  const [status, title] = SPEC[kind];
  const extra: Record<string, unknown> = { detail };
  if (opts.service) extra['service'] = opts.service;
  if (opts.requestId) extra['requestId'] = opts.requestId;
  const body = JSON.stringify(problem(status, kind, title, extra));
  let head =
    'HTTP/1.1 ' +
    status +
    ' ' +
    title +
    '\r\ncontent-type: ' +
    PROBLEM_CONTENT_TYPE +
    '\r\ncontent-length: ' +
    Buffer.byteLength(body) +
    '\r\ncache-control: no-store\r\n';
  if (opts.retryAfter !== undefined) head += 'retry-after: ' + opts.retryAfter + '\r\n';
  if (opts.requestId) head += 'x-request-id: ' + opts.requestId + '\r\n';
  head += opts.close ? 'connection: close\r\n' : 'connection: keep-alive\r\n';
  return head + '\r\n' + body;
}
