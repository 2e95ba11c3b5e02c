/**
 * The shared ring behind `createLogDestination({ thread: true })`. Internal: not part of any
 * published subpath.
 *
 * One producer (the thread that logs) appends records to a `SharedArrayBuffer`; whoever holds the
 * consumer lock (normally the writer thread, the logging thread itself when it flushes, when the
 * ring is full, or when the writer thread is gone) turns them into NDJSON bytes and writes them to
 * the file descriptor. A record leaves the ring only after its bytes are written, so a line is
 * always either in the ring or in the file, whichever thread is draining when the process exits.
 *
 * Records are 8-byte aligned and start with one 32-bit word: the record type in the low 8 bits,
 * the record's byte length above them.
 *   TEXT     a finished line, UTF-8:    [word][byteLength][bytes...]
 *   REQUEST  a request line as numbers: [word][level|status<<8][bindings][method][route][idLength]
 *                                       [time f64][latency ms f64][id bytes...]
 *   PAD      the rest of the buffer is unused; the next record starts at offset 0.
 * The strings a request line repeats (the logger's bindings, the quoted method and route) are
 * interned: written once into a third shared buffer, append-only, and named by index. Either
 * consuming thread can read any of them, whoever drained the record that first used it.
 */
import { writeSync } from 'node:fs';

/** Indexes into the control words (an Int32Array over its own SharedArrayBuffer). */
const HEAD = 0; // where the producer writes next (producer-owned)
const TAIL = 1; // the first record not yet written out (consumer-owned)
export const LOCK = 2; // consumer lock: FREE, or who holds it
const WAKE = 3; // bumped by the producer to wake the writer thread early
const STOP = 4; // 1: the writer thread must exit without draining
export const DROPPED = 5; // lines lost to write errors, counted by whichever thread wrote
export const CONTROL_WORDS = 8;

export const FREE = 0;
export const HELD_BY_WORKER = 1;
const HELD_BY_OWNER = 2;

const PAD = 0;
const TEXT = 1;
const REQUEST = 2;

/** Interned fragments: at most this many, each at most FRAGMENT_MAX bytes. */
const FRAGMENT_SLOTS = 4096;
const FRAGMENT_MAX = 1024;
/** The fragment store: a table of [offset, length] pairs, then the bytes. */
const FRAGMENT_TABLE_BYTES = FRAGMENT_SLOTS * 8;
export const FRAGMENT_STORE_BYTES = FRAGMENT_TABLE_BYTES + 512 * 1024;

/** Records are published to the writer thread this many bytes at a time (and on every flush). */
const PUBLISH_BYTES = 4096;

/** Bytes before a REQUEST record's id: 6 words, then time and latency as doubles. */
const REQUEST_FIXED = 40;
/** A formatted request line is never longer: 3 fragments, a 128-byte id, fixed text and numbers. */
const REQUEST_LINE_MAX = 3 * 1024 + 1024;

/** What a writer thread needs: the three shared buffers and where and how to write. */
export interface RingInit {
  control: SharedArrayBuffer;
  data: SharedArrayBuffer;
  fragments: SharedArrayBuffer;
  fd: number;
  /** Write out once this many formatted bytes are waiting. */
  batchBytes: number;
  flushIntervalMs: number;
}

const align8 = (n: number) => (n + 7) & ~7;

const ascii = (s: string) => Buffer.from(s, 'latin1');
const INFO_HEAD = ascii('{"level":"info","time":');
const ERROR_HEAD = ascii('{"level":"error","time":');
const REQUEST_ID_KEY = ascii(',"request_id":"');
const METHOD_KEY = ascii('","method":');
const ROUTE_KEY = ascii(',"route":');
const STATUS_KEY = ascii(',"status":');
const LATENCY_KEY = ascii(',"latency_ms":');
const REQUEST_TAIL = ascii(',"msg":"request"}\n');

function put(out: Uint8Array, p: number, bytes: Uint8Array): number {
  if (bytes.length <= 16) {
    for (let i = 0; i < bytes.length; i++) out[p + i] = bytes[i] as number;
  } else {
    out.set(bytes, p);
  }
  return p + bytes.length;
}

/**
 * Write all `length` bytes of `buf` from `offset` with synchronous `write(2)` calls; throws what
 * the descriptor answers, except EAGAIN. Regular files take a whole batch at once; pipes and ttys
 * may take part of it or answer EAGAIN, in which case this waits a moment and goes on, blocking as
 * a synchronous logger does. Both log destinations write through it.
 */
export function writeFully(fd: number, buf: Uint8Array, offset: number, length: number): void {
  let off = 0;
  let pause: Int32Array | undefined;
  while (off < length) {
    try {
      off += writeSync(fd, buf, offset + off, length - off);
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'EAGAIN') throw err;
      pause ??= new Int32Array(new SharedArrayBuffer(4));
      Atomics.wait(pause, 0, 0, 1);
    }
  }
}

/** A non-negative integer (up to 2^53) in decimal. */
function putInteger(out: Uint8Array, p: number, n: number): number {
  let digits = 1;
  for (let x = n; x >= 10; x = Math.floor(x / 10)) digits++;
  for (let i = digits - 1; i >= 0; i--) {
    const q = Math.floor(n / 10);
    out[p + i] = 48 + (n - q * 10);
    n = q;
  }
  return p + digits;
}

/**
 * `latency_ms` exactly as `latencyText()` (util/latency-text) prints it, rounded to the
 * microsecond with no trailing zeros, straight into bytes.
 */
export function putLatency(out: Uint8Array, p: number, ms: number): number {
  const us = Math.round(ms * 1000);
  const whole = Math.floor(us / 1000);
  let frac = us - whole * 1000;
  p = putInteger(out, p, whole);
  if (frac === 0) return p;
  out[p++] = 46;
  let digits = 3;
  while (frac % 10 === 0) {
    frac /= 10;
    digits--;
  }
  for (let i = digits - 1; i >= 0; i--) {
    out[p + i] = 48 + (frac % 10);
    frac = Math.floor(frac / 10);
  }
  return p + digits;
}

/** Views over the shared buffers; cheap to build, one set per thread. */
export class RingViews {
  readonly ctl: Int32Array;
  readonly u8: Uint8Array;
  readonly i32: Int32Array;
  readonly f64: Float64Array;
  readonly bytes: Buffer;
  readonly capacity: number;
  readonly fragmentTable: Int32Array;
  readonly fragmentBytes: Buffer;
  constructor(init: Pick<RingInit, 'control' | 'data' | 'fragments'>) {
    this.ctl = new Int32Array(init.control);
    this.u8 = new Uint8Array(init.data);
    this.i32 = new Int32Array(init.data);
    this.f64 = new Float64Array(init.data);
    this.bytes = Buffer.from(init.data);
    this.capacity = init.data.byteLength;
    this.fragmentTable = new Int32Array(init.fragments, 0, FRAGMENT_SLOTS * 2);
    this.fragmentBytes = Buffer.from(init.fragments);
  }
}

/**
 * Formats records into one reusable output buffer and writes it out with synchronous `write(2)`
 * calls. One per consuming thread.
 */
export class RingConsumer {
  private readonly out: Buffer;
  private used = 0;
  // This thread's views of the interned fragments, made on first use.
  private readonly fragments: Buffer[] = [];
  constructor(
    private readonly v: RingViews,
    private readonly fd: number,
    private readonly batchBytes: number,
  ) {
    // Room for a batch plus the longest request line (three fragments, an id, a few numbers); a
    // TEXT record that does not fit is written straight from the ring.
    this.out = Buffer.allocUnsafe(batchBytes + REQUEST_LINE_MAX);
  }

  private fragment(id: number): Buffer {
    let f = this.fragments[id];
    if (f === undefined) {
      const t = this.v.fragmentTable;
      const at = t[id * 2] as number;
      f = this.v.fragmentBytes.subarray(at, at + (t[id * 2 + 1] as number));
      this.fragments[id] = f;
    }
    return f;
  }

  /**
   * Write out the records published when the call began (a pass is bounded, so the other thread
   * never waits for the lock longer than one ring's worth of lines). The caller holds the lock.
   * Returns the number of lines lost to write errors.
   */
  drain(): number {
    const { ctl, i32, bytes, capacity } = this.v;
    const head = Atomics.load(ctl, HEAD);
    let tail = Atomics.load(ctl, TAIL);
    let lost = 0;
    let pendingLines = 0;
    const flush = () => {
      if (this.used > 0) {
        if (!this.writeAll(this.out, 0, this.used)) lost += pendingLines;
        this.used = 0;
      }
      pendingLines = 0;
      // Only now is the space reusable: a record leaves the ring once its line is written.
      Atomics.store(ctl, TAIL, tail);
    };
    while (tail !== head) {
      const word = i32[tail >> 2] as number;
      const type = word & 0xff;
      if (type === PAD) {
        tail = 0;
        continue;
      }
      if (type === TEXT) {
        const n = i32[(tail >> 2) + 1] as number;
        if (this.used + n > this.out.length) flush();
        if (n > this.out.length) {
          if (!this.writeAll(bytes, tail + 8, n)) lost++;
        } else {
          bytes.copy(this.out, this.used, tail + 8, tail + 8 + n);
          this.used += n;
          pendingLines++;
        }
      } else if (type === REQUEST) {
        if (this.used + REQUEST_LINE_MAX > this.out.length) flush();
        this.used = this.formatRequest(tail);
        pendingLines++;
      }
      tail += word >>> 8;
      if (tail >= capacity) tail = 0;
      if (this.used >= this.batchBytes) flush();
    }
    flush();
    return lost;
  }

  // The bytes `logger.info({ request_id, method, route, status, latency_ms }, 'request')` writes.
  // Built with typed-array copies and digit loops: each Buffer write or copy is a call into C++,
  // which for pieces this short costs more than the bytes themselves.
  private formatRequest(at: number): number {
    const { i32, f64, u8 } = this.v;
    const w = at >> 2;
    const levelStatus = i32[w + 1] as number;
    const idLength = i32[w + 5] as number;
    const out = this.out;
    let p = this.used;
    p = put(out, p, (levelStatus & 0xff) === 1 ? ERROR_HEAD : INFO_HEAD);
    p = putInteger(out, p, f64[(at >> 3) + 3] as number);
    p = put(out, p, this.fragment(i32[w + 2] as number));
    p = put(out, p, REQUEST_ID_KEY);
    out.set(u8.subarray(at + REQUEST_FIXED, at + REQUEST_FIXED + idLength), p);
    p += idLength;
    p = put(out, p, METHOD_KEY);
    p = put(out, p, this.fragment(i32[w + 3] as number));
    p = put(out, p, ROUTE_KEY);
    p = put(out, p, this.fragment(i32[w + 4] as number));
    p = put(out, p, STATUS_KEY);
    p = putInteger(out, p, levelStatus >>> 8);
    p = put(out, p, LATENCY_KEY);
    p = putLatency(out, p, f64[(at >> 3) + 4] as number);
    return put(out, p, REQUEST_TAIL);
  }

  /** Write `length` bytes of `buf` from `offset`; false when the descriptor refused them. */
  writeAll(buf: Uint8Array, offset: number, length: number): boolean {
    try {
      writeFully(this.fd, buf, offset, length);
      return true;
    } catch {
      return false;
    }
  }
}

/**
 * The producing side: appends records, and drains the ring itself (taking the lock from the
 * writer thread, waiting for it if need be) when asked to flush or when the ring is full.
 */
export class RingProducer {
  private head = 0;
  private knownTail = 0;
  private sinceWake = 0;
  private sincePublish = 0;
  private fragmentCount = 0;
  private fragmentUsed = FRAGMENT_TABLE_BYTES;
  private readonly interned = new Map<string, number>();
  readonly consumer: RingConsumer;
  /** True while a writer thread is expected to drain; false when there is none or it is gone. */
  threaded = false;
  /** Lines lost on this thread: write errors while draining here, records that cannot fit. */
  dropped = 0;

  constructor(
    private readonly v: RingViews,
    fd: number,
    private readonly batchBytes: number,
    /** Wake the writer thread after this many bytes of records. */
    private readonly wakeBytes: number,
  ) {
    this.consumer = new RingConsumer(v, fd, batchBytes);
  }

  /**
   * The id of a JSON fragment (a logger's bindings, a quoted method or route), stored on first
   * use; -1 when it is too long or the store is full (the caller then writes a TEXT line).
   */
  intern(fragment: string): number {
    const known = this.interned.get(fragment);
    if (known !== undefined) return known;
    if (this.fragmentCount >= FRAGMENT_SLOTS || fragment.length * 3 > FRAGMENT_MAX) return -1;
    const store = this.v.fragmentBytes;
    if (this.fragmentUsed + fragment.length * 3 > store.length) return -1;
    const n = store.write(fragment, this.fragmentUsed);
    const id = this.fragmentCount++;
    this.v.fragmentTable[id * 2] = this.fragmentUsed;
    this.v.fragmentTable[id * 2 + 1] = n;
    this.fragmentUsed += n;
    // Visible to the writer thread through the HEAD store that publishes the first record using it.
    this.interned.set(fragment, id);
    return id;
  }

  /** Append one finished line (UTF-8). */
  text(line: string): void {
    const max = line.length * 3;
    // A line that could take a large part of the ring is written on its own, in order.
    if (max + 8 > this.v.capacity >> 2) {
      const bytes = Buffer.from(line, 'utf8');
      if (bytes.length + 8 > this.v.capacity >> 2) {
        this.drainHere(() => {
          if (!this.consumer.writeAll(bytes, 0, bytes.length)) this.dropped++;
        });
        return;
      }
    }
    const at = this.reserve(align8(8 + max));
    const n = this.v.bytes.write(line, at + 8);
    this.v.i32[(at >> 2) + 1] = n;
    this.publish(at, TEXT, align8(8 + n));
  }

  /**
   * Append one request record. `bindings`, `method` and `route` are {@link intern} ids; the id is
   * a checked request id (ASCII, at most 128 characters).
   */
  request(
    error: boolean,
    status: number,
    bindings: number,
    method: number,
    route: number,
    requestId: string,
    time: number,
    ms: number,
  ): void {
    const n = requestId.length;
    const size = align8(REQUEST_FIXED + n);
    const at = this.reserve(size);
    const { i32, f64, u8 } = this.v;
    const w = at >> 2;
    i32[w + 1] = (error ? 1 : 0) | (status << 8);
    i32[w + 2] = bindings;
    i32[w + 3] = method;
    i32[w + 4] = route;
    i32[w + 5] = n;
    f64[(at >> 3) + 3] = time;
    f64[(at >> 3) + 4] = ms;
    const base = at + REQUEST_FIXED;
    for (let i = 0; i < n; i++) u8[base + i] = requestId.charCodeAt(i);
    this.publish(at, REQUEST, size);
  }

  /** Write out everything in the ring now, on this thread. */
  flush(): void {
    this.drainHere(undefined);
  }

  // Room for `size` bytes at the head (size is at most a quarter of the ring), wrapping with a
  // PAD record. When full (the writer thread is behind, or gone) the ring is written out here
  // rather than a line dropped.
  private reserve(size: number): number {
    const cap = this.v.capacity;
    const need = this.head + size > cap ? cap - this.head + size : size;
    if (this.free(this.knownTail) < need) {
      this.knownTail = Atomics.load(this.v.ctl, TAIL);
      if (this.free(this.knownTail) < need) this.flush();
    }
    if (this.head + size > cap) {
      this.v.i32[this.head >> 2] = PAD;
      this.head = 0;
      Atomics.store(this.v.ctl, HEAD, 0);
    }
    return this.head;
  }

  private free(tail: number): number {
    let used = this.head - tail;
    if (used < 0) used += this.v.capacity;
    // One slot stays empty so that head === tail always means "nothing waiting".
    return this.v.capacity - used - 8;
  }

  private publish(at: number, type: number, size: number): void {
    this.v.i32[at >> 2] = type | (size << 8);
    let next = at + size;
    if (next >= this.v.capacity) next = 0;
    this.head = next;
    this.sinceWake += size;
    this.sincePublish += size;
    if (this.threaded) {
      // Records become visible to the writer thread a few KB at a time: a sequentially consistent
      // store per record measured as a noticeable share of the whole record's cost.
      if (this.sincePublish >= PUBLISH_BYTES) this.sync(false);
      if (this.sinceWake >= this.wakeBytes) this.sync(true);
    } else if (this.sinceWake >= this.batchBytes) {
      // No writer thread: behave as the inline destination does, one write per batch.
      this.flush();
    }
  }

  /**
   * Make every record appended so far visible to the writer thread, and wake it when `wake` (or
   * when records are waiting and `wake` is undefined: the logging thread's timer, so a quiet
   * service's lines go out within the flush interval).
   */
  sync(wake?: boolean): void {
    this.sincePublish = 0;
    const ctl = this.v.ctl;
    const moved = Atomics.load(ctl, HEAD) !== this.head;
    if (moved) Atomics.store(ctl, HEAD, this.head);
    if (wake === true || (wake === undefined && this.head !== Atomics.load(ctl, TAIL))) {
      this.sinceWake = 0;
      Atomics.add(ctl, WAKE, 1);
      Atomics.notify(ctl, WAKE, 1);
    }
  }

  // Take the consumer lock, drain, run `then` (still holding it), release. The writer thread
  // holds the lock for one pass at most; if it holds it for far longer, it is taken to be dead
  // (its exit cannot be noticed while this thread waits) and the lock is taken over.
  private drainHere(then: (() => void) | undefined): void {
    const ctl = this.v.ctl;
    let waited = 0;
    for (;;) {
      const held = Atomics.compareExchange(ctl, LOCK, FREE, HELD_BY_OWNER);
      if (held === FREE) break;
      if (waited >= 5000) {
        Atomics.store(ctl, LOCK, HELD_BY_OWNER);
        break;
      }
      Atomics.wait(ctl, LOCK, held, 50);
      waited += 50;
    }
    try {
      Atomics.store(ctl, HEAD, this.head);
      this.sincePublish = 0;
      this.dropped += this.consumer.drain();
      this.knownTail = Atomics.load(ctl, TAIL);
      this.sinceWake = 0;
      then?.();
    } finally {
      Atomics.store(ctl, LOCK, FREE);
      Atomics.notify(ctl, LOCK);
    }
  }

  /**
   * Write out what is left and keep the lock for good (after `end()`): no thread writes to the
   * descriptor again, and the writer thread exits.
   */
  seal(): void {
    this.flush();
    Atomics.store(this.v.ctl, LOCK, HELD_BY_OWNER);
    Atomics.store(this.v.ctl, STOP, 1);
    Atomics.add(this.v.ctl, WAKE, 1);
    Atomics.notify(this.v.ctl, WAKE);
  }
}

/**
 * The writer thread's loop: sleep until woken or the flush interval passes, then drain under the
 * lock. Returns when STOP is set.
 */
export function runRingWriter(init: RingInit): void {
  const v = new RingViews(init);
  const consumer = new RingConsumer(v, init.fd, init.batchBytes);
  const ctl = v.ctl;
  for (;;) {
    const seen = Atomics.load(ctl, WAKE);
    if (Atomics.load(ctl, STOP) === 1) return;
    if (Atomics.load(ctl, HEAD) !== Atomics.load(ctl, TAIL)) {
      if (Atomics.compareExchange(ctl, LOCK, FREE, HELD_BY_WORKER) === FREE) {
        try {
          const lost = consumer.drain();
          if (lost > 0) Atomics.add(ctl, DROPPED, lost);
        } finally {
          Atomics.compareExchange(ctl, LOCK, HELD_BY_WORKER, FREE);
          Atomics.notify(ctl, LOCK);
        }
      }
    }
    Atomics.wait(ctl, WAKE, seen, init.flushIntervalMs);
  }
}
