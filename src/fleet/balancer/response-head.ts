/**
 * Response head parsing and rewriting: decides how the body is framed, whether the upstream
 * socket may be reused, and builds the head the client sees (hop-by-hop fields removed).
 */
import { Framing } from './framing.js';
import { dropFields } from './request-head.js';

/** Parsed facts about one response; one instance per client connection is reused. */
export class ResponseHead {
  status = 0;
  framing: Framing = Framing.None;
  contentLength = 0;
  /** The upstream socket can carry another request after this response. */
  reusable = true;
  /** The head to send to the client, ending in the blank line. */
  client = '';
  error = '';
}

const STATUS = /^HTTP\/1\.([01]) (\d{3})(?: |$)/;

/**
 * Parse an upstream response head (`text` without the final blank line).
 * `headRequest` suppresses the body; `closeClient` adds `connection: close`; `setCookie` (when not
 * empty) is appended as a Set-Cookie field.
 *
 * @example
 * const r = parseResponseHead(new ResponseHead(), 'HTTP/1.1 200 OK\r\ncontent-length: 2', false, false, '');
 * r.framing; // Framing.Length
 */
export function parseResponseHead(
  r: ResponseHead,
  text: string,
  headRequest: boolean,
  closeClient: boolean,
  setCookie: string,
): ResponseHead {
  r.error = '';
  r.framing = Framing.None;
  r.contentLength = 0;
  const lines = text.split('\r\n');
  const m = STATUS.exec(lines[0] ?? '');
  if (!m) {
    r.error = 'malformed status line';
    return r;
  }
  const status = Number(m[2]);
  r.status = status;
  let keepAlive = m[1] === '1';
  let hasLength = false;
  let chunked = false;
  let teSeen = false;
  let extraDrop: string[] | null = null;
  let out = lines[0] + '\r\n';

  for (let i = 1; i < lines.length; i++) {
    const line = lines[i]!;
    const colon = line.indexOf(':');
    if (colon <= 0) {
      r.error = 'malformed header line';
      return r;
    }
    // Cheap first-character filter: only c/k/p/t names can need attention.
    const c0 = line.charCodeAt(0) | 0x20;
    if (c0 === 99 /* c */ || c0 === 107 /* k */ || c0 === 112 /* p */ || c0 === 116 /* t */) {
      const lname = line.slice(0, colon).toLowerCase();
      switch (lname) {
        case 'connection': {
          for (const raw of line.slice(colon + 1).split(',')) {
            const tok = raw.trim().toLowerCase();
            if (tok === 'close') keepAlive = false;
            else if (tok === 'keep-alive') keepAlive = true;
            else if (tok && tok !== 'upgrade') {
              extraDrop ??= [];
              extraDrop.push(tok);
            }
          }
          continue;
        }
        case 'keep-alive':
        case 'proxy-connection':
          continue;
        case 'content-length': {
          const v = line.slice(colon + 1).trim();
          if (!/^\d{1,15}$/.test(v)) {
            r.error = 'invalid Content-Length';
            return r;
          }
          const n = Number(v);
          if (hasLength && n !== r.contentLength) {
            r.error = 'conflicting Content-Length';
            return r;
          }
          hasLength = true;
          r.contentLength = n;
          break;
        }
        case 'transfer-encoding': {
          teSeen = true;
          const codings = line
            .slice(colon + 1)
            .toLowerCase()
            .split(',');
          chunked = (codings[codings.length - 1] ?? '').trim() === 'chunked';
          break;
        }
      }
    }
    out += line + '\r\n';
  }

  if (extraDrop) {
    out = dropFields(out, extraDrop);
  }

  if (headRequest || status === 204 || status === 304 || status < 200) {
    r.framing = Framing.None;
  } else if (teSeen) {
    // A non-chunked transfer coding ends at connection close (RFC 9112 6.3).
    r.framing = chunked ? Framing.Chunked : Framing.UntilClose;
    if (!chunked) keepAlive = false;
  } else if (hasLength) {
    r.framing = r.contentLength > 0 ? Framing.Length : Framing.None;
  } else {
    r.framing = Framing.UntilClose;
    keepAlive = false;
  }
  r.reusable = keepAlive;
  if (setCookie) out += 'set-cookie: ' + setCookie + '\r\n';
  // A body delimited by close must be delimited by close towards the client too.
  if (closeClient || r.framing === Framing.UntilClose) out += 'connection: close\r\n';
  r.client = out + '\r\n';
  return r;
}
