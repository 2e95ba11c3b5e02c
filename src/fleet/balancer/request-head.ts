/**
 * Request head parsing and rewriting: one pass over the header lines that strips hop-by-hop
 * fields, adds the X-Forwarded-* set and X-Request-Id, and records what routing needs.
 *
 * Works on the latin1 string of the head (`\r\n`-separated lines) so a typical request costs one
 * `toString`, one `split` and one string build — no header objects, no per-header allocations
 * beyond the line strings themselves.
 */
import { acceptRequestId } from '../../observe/request-id.js';
import { Framing } from './framing.js';

/** Parsed facts about one request; a single instance per client connection is reused. */
export class RequestHead {
  method = '';
  target = '';
  /** 0 for HTTP/1.0, 1 for HTTP/1.1. */
  minor = 1;
  host = '';
  framing: Framing = Framing.None;
  contentLength = 0;
  /** The client asked to close after this exchange (or spoke HTTP/1.0 without keep-alive). */
  close = false;
  upgrade = false;
  expectContinue = false;
  idempotencyKey = false;
  requestId = '';
  /** Value of the sticky cookie, when routing is sticky and the client sent one. */
  sticky = '';
  /** The head to send upstream, request line included, ending in the blank line. */
  upstream = '';
  /** Why the head was rejected (400/431/501 text), empty when valid. */
  error = '';
  errorStatus = 400;
}

/** Per-balancer constants the parser needs; built once. */
export interface RequestHeadContext {
  stickyCookie: string | null;
}

// Hop-by-hop fields (RFC 9110 7.6.1) plus those the balancer replaces with its own values.
// Transfer-Encoding is kept: the body is forwarded with its framing untouched.
const DROP = new Set([
  'connection',
  'keep-alive',
  'proxy-connection',
  'te',
  'upgrade',
  'x-forwarded-for',
  'x-forwarded-proto',
  'x-forwarded-host',
  'x-request-id',
]);

const TOKEN = /^[!#$%&'*+\-.^_`|~0-9A-Za-z]+$/;
const VERSION = /^HTTP\/1\.([01])$/;

function fail(h: RequestHead, status: number, msg: string): RequestHead {
  h.error = msg;
  h.errorStatus = status;
  return h;
}

function stickyValue(cookieHeader: string, name: string): string {
  let from = 0;
  while (from < cookieHeader.length) {
    const semi = cookieHeader.indexOf(';', from);
    const end = semi === -1 ? cookieHeader.length : semi;
    const eq = cookieHeader.indexOf('=', from);
    if (eq !== -1 && eq < end && cookieHeader.slice(from, eq).trim() === name) {
      return cookieHeader.slice(eq + 1, end).trim();
    }
    from = end + 1;
  }
  return '';
}

/**
 * Parse the head in `text` (without the final blank line) into `h` and build the upstream head.
 * `clientIp` is appended to X-Forwarded-For.
 *
 * @example
 * const h = parseRequestHead(new RequestHead(), 'GET / HTTP/1.1\r\nHost: a', '10.0.0.1', { stickyCookie: null });
 * h.upstream; // 'GET / HTTP/1.1\r\nHost: a\r\nx-forwarded-for: 10.0.0.1\r\n...\r\n\r\n'
 */
export function parseRequestHead(
  h: RequestHead,
  text: string,
  clientIp: string,
  ctx: RequestHeadContext,
): RequestHead {
  h.error = '';
  h.host = '';
  h.framing = Framing.None;
  h.contentLength = 0;
  h.close = false;
  h.upgrade = false;
  h.expectContinue = false;
  h.idempotencyKey = false;
  h.requestId = '';
  h.sticky = '';

  const lines = text.split('\r\n');
  const reqLine = lines[0] ?? '';
  const sp1 = reqLine.indexOf(' ');
  const sp2 = reqLine.lastIndexOf(' ');
  if (sp1 <= 0 || sp2 <= sp1) return fail(h, 400, 'malformed request line');
  const method = reqLine.slice(0, sp1);
  const target = reqLine.slice(sp1 + 1, sp2);
  const version = VERSION.exec(reqLine.slice(sp2 + 1));
  if (!version || !TOKEN.test(method) || target.length === 0 || target.includes(' ')) {
    return fail(h, 400, 'malformed request line');
  }
  if (method === 'CONNECT') return fail(h, 501, 'CONNECT is not supported');
  h.method = method;
  h.target = target;
  h.minor = version[1] === '0' ? 0 : 1;

  let xff = '';
  let rid = '';
  let connTokens = '';
  let upgradeValue = '';
  let te = '';
  let hasLength = false;
  let out = method + ' ' + target + (h.minor === 0 ? ' HTTP/1.0\r\n' : ' HTTP/1.1\r\n');
  let extraDrop: string[] | null = null;

  for (let i = 1; i < lines.length; i++) {
    const line = lines[i]!;
    const colon = line.indexOf(':');
    if (colon <= 0) return fail(h, 400, 'malformed header line');
    const first = line.charCodeAt(0);
    if (first === 32 || first === 9) return fail(h, 400, 'obsolete header folding');
    const name = line.slice(0, colon);
    const lname = name.toLowerCase();
    if (DROP.has(lname)) {
      const value = line.slice(colon + 1).trim();
      switch (lname) {
        case 'connection':
          connTokens = connTokens ? connTokens + ',' + value : value;
          break;
        case 'upgrade':
          upgradeValue = value;
          break;
        case 'x-forwarded-for':
          xff = xff ? xff + ', ' + value : value;
          break;
        case 'x-request-id':
          rid = value;
          break;
      }
      continue;
    }
    if (name.length !== name.trimEnd().length || !TOKEN.test(name)) {
      return fail(h, 400, 'malformed header name');
    }
    switch (lname) {
      case 'host':
        if (h.host) return fail(h, 400, 'duplicate Host');
        h.host = line.slice(colon + 1).trim();
        break;
      case 'content-length': {
        const v = line.slice(colon + 1).trim();
        if (!/^\d{1,15}$/.test(v)) return fail(h, 400, 'invalid Content-Length');
        const n = Number(v);
        if (hasLength && n !== h.contentLength) return fail(h, 400, 'conflicting Content-Length');
        hasLength = true;
        h.contentLength = n;
        break;
      }
      case 'transfer-encoding': {
        const v = line
          .slice(colon + 1)
          .trim()
          .toLowerCase();
        te = te ? te + ',' + v : v;
        break;
      }
      case 'expect':
        if (
          line
            .slice(colon + 1)
            .trim()
            .toLowerCase() === '100-continue'
        )
          h.expectContinue = true;
        break;
      case 'idempotency-key':
        h.idempotencyKey = true;
        break;
      case 'cookie':
        if (ctx.stickyCookie && !h.sticky) h.sticky = stickyValue(line.slice(colon + 1), ctx.stickyCookie);
        break;
    }
    out += line + '\r\n';
  }

  if (te) {
    // RFC 9112 6.1: chunked must be the final coding of a request; with it, Content-Length is
    // ignored — and must not be forwarded, or the next hop might frame the body differently.
    const codings = te.split(',');
    if ((codings[codings.length - 1] ?? '').trim() !== 'chunked') {
      return fail(h, 400, 'unsupported Transfer-Encoding');
    }
    if (h.minor === 0) return fail(h, 400, 'Transfer-Encoding in HTTP/1.0');
    h.framing = Framing.Chunked;
    if (hasLength) {
      out = out.replace(/\r\ncontent-length:[^\r]*/gi, '');
      h.contentLength = 0;
    }
  } else if (hasLength) {
    h.framing = h.contentLength > 0 ? Framing.Length : Framing.None;
  }
  if (h.minor === 1 && !h.host) return fail(h, 400, 'missing Host');

  let keepAlive = h.minor === 1;
  if (connTokens) {
    for (const raw of connTokens.split(',')) {
      const tok = raw.trim().toLowerCase();
      if (tok === 'close') keepAlive = false;
      else if (tok === 'keep-alive') keepAlive = true;
      else if (tok === 'upgrade') h.upgrade = upgradeValue !== '';
      else if (tok && !DROP.has(tok)) {
        extraDrop ??= [];
        extraDrop.push(tok);
      }
    }
  }
  // HTTP/1.0 keep-alive is an opt-in extension with its own pitfalls; one request per connection.
  h.close = !keepAlive || h.minor === 0;
  if (extraDrop) {
    // Fields the client declared hop-by-hop in Connection are for this hop only.
    out = dropFields(out, extraDrop);
  }

  h.requestId = acceptRequestId(rid);
  out += 'x-forwarded-for: ' + (xff ? xff + ', ' + clientIp : clientIp) + '\r\n';
  out += 'x-forwarded-proto: http\r\n';
  if (h.host) out += 'x-forwarded-host: ' + h.host + '\r\n';
  out += 'x-request-id: ' + h.requestId + '\r\n';
  if (h.upgrade) out += 'connection: upgrade\r\nupgrade: ' + upgradeValue + '\r\n';
  else if (h.minor === 0) out += 'connection: close\r\n';
  h.upstream = out + '\r\n';
  return h;
}

/**
 * Remove the header lines named in `names` (lower-case) from a head built line by line, keeping
 * the start line; used for fields a message's Connection header declares hop-by-hop.
 *
 * @example
 * dropFields('GET / HTTP/1.1\r\nx-a: 1\r\nhost: h\r\n', ['x-a']); // 'GET / HTTP/1.1\r\nhost: h\r\n'
 */
export function dropFields(head: string, names: readonly string[]): string {
  const drop = new Set(names);
  const out = head
    .split('\r\n')
    .filter((l, idx) => idx === 0 || l === '' || !drop.has(l.slice(0, l.indexOf(':')).toLowerCase()))
    .join('\r\n');
  return out.endsWith('\r\n') ? out : out + '\r\n';
}

/** Methods a client may repeat without changing the outcome (RFC 9110 9.2.2). */
export function isRepeatable(h: RequestHead): boolean {
  switch (h.method) {
    case 'GET':
    case 'HEAD':
    case 'OPTIONS':
    case 'PUT':
    case 'DELETE':
      return true;
    case 'POST':
    case 'PATCH':
      return h.idempotencyKey;
    default:
      return false;
  }
}
