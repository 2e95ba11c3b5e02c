/**
 * Message-body framing for HTTP/1.1: finds where a body ends without decoding or copying it.
 *
 * The balancer forwards body bytes exactly as they arrive (chunked stays chunked), so all it needs
 * to know is where the current message stops and the next one (pipelined request, next response on
 * a keep-alive socket) starts, and how many payload bytes went past (for the body-size limit).
 */

/** How a message body is delimited. */
export enum Framing {
  /** No body (GET without length, HEAD/204/304 responses). */
  None = 0,
  /** `Content-Length`. */
  Length = 1,
  /** `Transfer-Encoding: chunked`. */
  Chunked = 2,
  /** Response body that ends when the upstream closes the connection. */
  UntilClose = 3,
}

enum Chunk {
  Size = 0,
  Ext = 1,
  SizeLf = 2,
  Data = 3,
  DataCr = 4,
  DataLf = 5,
  TrailerStart = 6,
  Trailer = 7,
  TrailerLf = 8,
  FinalLf = 9,
}

const CR = 13;
const LF = 10;
// A chunk size above this is an attack or a bug, not a body this balancer should stream.
const MAX_CHUNK = 2 ** 42;

function hexValue(c: number): number {
  if (c >= 48 && c <= 57) return c - 48;
  if (c >= 97 && c <= 102) return c - 87;
  if (c >= 65 && c <= 70) return c - 55;
  return -1;
}

/**
 * Tracks one message body. Reused across messages via `reset` so a keep-alive connection does not
 * allocate a tracker per request.
 *
 * @example
 * const f = new BodyFramer();
 * f.reset(Framing.Length, 5);
 * f.consume(Buffer.from('hello GET /next'), 0); // 5, f.done === true
 */
export class BodyFramer {
  mode: Framing = Framing.None;
  /** Bytes left in the Content-Length body or in the current chunk's data. */
  remaining = 0;
  /** Payload bytes seen so far (chunk framing excluded). */
  payload = 0;
  done = true;
  error = false;
  private state: Chunk = Chunk.Size;
  private size = 0;
  private digits = 0;

  reset(mode: Framing, length = 0): void {
    this.mode = mode;
    this.payload = 0;
    this.error = false;
    this.state = Chunk.Size;
    this.size = 0;
    this.digits = 0;
    this.remaining = mode === Framing.Length ? length : 0;
    this.done = mode === Framing.None || (mode === Framing.Length && length === 0);
  }

  /**
   * Consume body bytes of `buf` from `off`. Returns how many bytes belong to this body (the rest
   * belongs to the next message), or -1 on a framing error. Sets `done` when the body is complete.
   */
  consume(buf: Buffer, off: number): number {
    const len = buf.length - off;
    if (this.done) return 0;
    switch (this.mode) {
      case Framing.Length: {
        const n = Math.min(len, this.remaining);
        this.remaining -= n;
        this.payload += n;
        if (this.remaining === 0) this.done = true;
        return n;
      }
      case Framing.UntilClose:
        this.payload += len;
        return len;
      case Framing.Chunked:
        return this.chunked(buf, off);
      default:
        return 0;
    }
  }

  private fail(): number {
    this.error = true;
    return -1;
  }

  private chunked(buf: Buffer, off: number): number {
    const end = buf.length;
    let i = off;
    while (i < end) {
      switch (this.state) {
        case Chunk.Data: {
          const avail = end - i;
          const n = Math.min(avail, this.remaining);
          i += n;
          this.remaining -= n;
          this.payload += n;
          if (this.remaining === 0) this.state = Chunk.DataCr;
          continue;
        }
        case Chunk.Size: {
          const c = buf[i]!;
          const h = hexValue(c);
          if (h >= 0) {
            this.size = this.size * 16 + h;
            this.digits++;
            if (this.size > MAX_CHUNK) return this.fail();
          } else if (this.digits === 0) {
            return this.fail();
          } else if (c === CR) {
            this.state = Chunk.SizeLf;
          } else if (c === 59 /* ; */ || c === 32 || c === 9) {
            this.state = Chunk.Ext;
          } else {
            return this.fail();
          }
          break;
        }
        case Chunk.Ext: {
          const c = buf[i]!;
          if (c === CR) this.state = Chunk.SizeLf;
          else if (c === LF) return this.fail();
          break;
        }
        case Chunk.SizeLf:
          if (buf[i] !== LF) return this.fail();
          if (this.size === 0) {
            this.state = Chunk.TrailerStart;
          } else {
            this.remaining = this.size;
            this.state = Chunk.Data;
          }
          this.size = 0;
          this.digits = 0;
          break;
        case Chunk.DataCr:
          if (buf[i] !== CR) return this.fail();
          this.state = Chunk.DataLf;
          break;
        case Chunk.DataLf:
          if (buf[i] !== LF) return this.fail();
          this.state = Chunk.Size;
          break;
        case Chunk.TrailerStart:
          this.state = buf[i] === CR ? Chunk.FinalLf : Chunk.Trailer;
          break;
        case Chunk.Trailer:
          if (buf[i] === CR) this.state = Chunk.TrailerLf;
          break;
        case Chunk.TrailerLf:
          if (buf[i] !== LF) return this.fail();
          this.state = Chunk.TrailerStart;
          break;
        case Chunk.FinalLf:
          if (buf[i] !== LF) return this.fail();
          this.done = true;
          return i + 1 - off;
      }
      i++;
    }
    return i - off;
  }
}
