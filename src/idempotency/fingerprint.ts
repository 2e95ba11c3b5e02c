/**
 * Request fingerprints: method + route + canonical body, hashed.
 *
 * Why a parser of our own instead of `JSON.parse`: `JSON.parse` turns 12345678901234567890 and
 * 12345678901234567891 into the same double, so two different orders would "match" and the second
 * would be answered with the first one's result. This canonicaliser keeps numbers that a double
 * cannot hold exactly as their source digits, sorts object keys and drops insignificant whitespace.
 */
import { createHash } from 'node:crypto';

/** Which body fields take part in the fingerprint (dot paths into JSON objects, e.g. `customer.id`). */
export interface FingerprintFields {
  /** Only these paths (and everything below them) count. */
  include?: readonly string[];
  /** These paths never count (e.g. a client timestamp or a tracing nonce). */
  exclude?: readonly string[];
}

/** What goes into a fingerprint. */
export interface FingerprintInput {
  method: string;
  /** The request target the key applies to (path and query). */
  route: string;
  body: string | Uint8Array;
  contentType?: string | undefined;
}

type Json = null | boolean | string | JsonNumber | Json[] | JsonObject;
interface JsonNumber {
  n: string;
}
type JsonObject = Map<string, Json>;

class JsonSyntaxError extends Error {}

const JSON_TYPE = /^application\/(?:[\w.+-]*\+)?json\b/i;

/** Parses JSON text into a tree whose numbers keep a canonical spelling. */
class Parser {
  i = 0;
  constructor(readonly s: string) {}

  fail(): never {
    throw new JsonSyntaxError(`bad JSON at ${this.i}`);
  }

  ws(): void {
    const s = this.s;
    for (;;) {
      const c = s.charCodeAt(this.i);
      if (c === 0x20 || c === 0x0a || c === 0x0d || c === 0x09) this.i++;
      else return;
    }
  }

  value(depth: number): Json {
    if (depth > 256) this.fail();
    this.ws();
    const c = this.s[this.i];
    if (c === '{') return this.object(depth);
    if (c === '[') return this.array(depth);
    if (c === '"') return this.string();
    if (c === 't') return this.word('true', true);
    if (c === 'f') return this.word('false', false);
    if (c === 'n') return this.word('null', null);
    return this.number();
  }

  word<T>(w: string, v: T): T {
    if (this.s.startsWith(w, this.i)) {
      this.i += w.length;
      return v;
    }
    return this.fail();
  }

  string(): string {
    const start = this.i;
    this.i++;
    let escaped = false;
    const s = this.s;
    for (;;) {
      const c = s.charCodeAt(this.i);
      if (Number.isNaN(c) || c < 0x20) this.fail();
      if (c === 0x22) break;
      if (c === 0x5c) {
        escaped = true;
        this.i += 2;
        continue;
      }
      this.i++;
    }
    this.i++;
    const raw = s.slice(start + 1, this.i - 1);
    if (!escaped) return raw;
    try {
      return JSON.parse(s.slice(start, this.i)) as string;
    } catch {
      return this.fail();
    }
  }

  number(): JsonNumber {
    const m = /-?(?:0|[1-9]\d*)(?:\.\d+)?(?:[eE][+-]?\d+)?/y;
    m.lastIndex = this.i;
    const hit = m.exec(this.s);
    if (!hit || hit[0] === '' || hit[0] === '-') this.fail();
    this.i += hit[0].length;
    return { n: canonicalNumber(hit[0]) };
  }

  array(depth: number): Json[] {
    this.i++;
    const out: Json[] = [];
    this.ws();
    if (this.s[this.i] === ']') {
      this.i++;
      return out;
    }
    for (;;) {
      out.push(this.value(depth + 1));
      this.ws();
      const c = this.s[this.i++];
      if (c === ']') return out;
      if (c !== ',') this.fail();
    }
  }

  object(depth: number): JsonObject {
    this.i++;
    const out: JsonObject = new Map();
    this.ws();
    if (this.s[this.i] === '}') {
      this.i++;
      return out;
    }
    for (;;) {
      this.ws();
      if (this.s[this.i] !== '"') this.fail();
      const k = this.string();
      this.ws();
      if (this.s[this.i++] !== ':') this.fail();
      // Last duplicate wins, as with JSON.parse, so the handler and the fingerprint agree.
      out.delete(k);
      out.set(k, this.value(depth + 1));
      this.ws();
      const c = this.s[this.i++];
      if (c === '}') return out;
      if (c !== ',') this.fail();
    }
  }
}

/** `1.0`, `1e0` and `1` are one number; digits a double cannot hold exactly stay as written. */
function canonicalNumber(lexeme: string): string {
  const mantissa = lexeme
    .replace(/[eE].*$/, '')
    .replace(/[-.]/g, '')
    .replace(/^0+/, '');
  const significant = mantissa.replace(/0+$/, '').length;
  if (significant <= 15) {
    const n = Number(lexeme);
    if (Number.isFinite(n)) return String(n);
  }
  return lexeme;
}

function write(v: Json, out: string[]): void {
  if (v === null) out.push('null');
  else if (v === true) out.push('true');
  else if (v === false) out.push('false');
  else if (typeof v === 'string') out.push(JSON.stringify(v));
  else if (Array.isArray(v)) {
    out.push('[');
    for (let i = 0; i < v.length; i++) {
      if (i > 0) out.push(',');
      write(v[i]!, out);
    }
    out.push(']');
  } else if (v instanceof Map) {
    out.push('{');
    const keys = [...v.keys()].sort();
    for (let i = 0; i < keys.length; i++) {
      if (i > 0) out.push(',');
      out.push(JSON.stringify(keys[i]), ':');
      write(v.get(keys[i]!)!, out);
    }
    out.push('}');
  } else out.push(v.n);
}

function pick(v: Json, paths: string[][]): Json | undefined {
  if (paths.some((p) => p.length === 0)) return v;
  if (!(v instanceof Map)) return undefined;
  const out: JsonObject = new Map();
  for (const [k, child] of v) {
    const rest = paths.filter((p) => p[0] === k).map((p) => p.slice(1));
    if (rest.length === 0) continue;
    const kept = pick(child, rest);
    if (kept !== undefined) out.set(k, kept);
  }
  return out;
}

function drop(v: Json, path: string[]): void {
  if (!(v instanceof Map) || path.length === 0) return;
  const [head, ...rest] = path as [string, ...string[]];
  if (rest.length === 0) v.delete(head);
  else {
    const child = v.get(head);
    if (child !== undefined) drop(child, rest);
  }
}

// A run of 16+ digits and dots may be a number with more significant digits than a double holds.
const LONG_MANTISSA = /[0-9.]{16}/;
const MAX_DEPTH = 256;

/** Signals that the fast path cannot reproduce the careful parser's output exactly. */
const BAIL = Symbol('bail');

/**
 * Canonical text of a `JSON.parse` result, or BAIL. Only used when no number in the source can
 * have more than 15 significant digits: then every number's canonical spelling is
 * `String(Number(lexeme))`, which is exactly what `JSON.parse` + `String` yield, so the output is
 * byte-identical to the careful parser's. Depth and non-finite numbers bail out to that parser.
 */
function writeParsed(v: unknown, depth: number): string | typeof BAIL {
  if (depth > MAX_DEPTH) return BAIL;
  if (v === null) return 'null';
  switch (typeof v) {
    case 'string':
      return JSON.stringify(v);
    case 'number':
      return Number.isFinite(v) ? String(v) : BAIL;
    case 'boolean':
      return v ? 'true' : 'false';
    default:
      break;
  }
  if (Array.isArray(v)) {
    let out = '[';
    for (let i = 0; i < v.length; i++) {
      const item = writeParsed(v[i], depth + 1);
      if (item === BAIL) return BAIL;
      out += i > 0 ? `,${item}` : item;
    }
    return `${out}]`;
  }
  const o = v as Record<string, unknown>;
  const keys = Object.keys(o).sort();
  let out = '{';
  for (let i = 0; i < keys.length; i++) {
    const k = keys[i]!;
    const item = writeParsed(o[k], depth + 1);
    if (item === BAIL) return BAIL;
    out += `${i > 0 ? ',' : ''}${JSON.stringify(k)}:${item}`;
  }
  return `${out}}`;
}

function fastCanonical(text: string): string | undefined {
  if (LONG_MANTISSA.test(text)) return undefined;
  let parsed: unknown;
  try {
    parsed = JSON.parse(text);
  } catch {
    return undefined;
  }
  const out = writeParsed(parsed, 0);
  return out === BAIL ? undefined : out;
}

/**
 * Canonical JSON text: sorted keys, no whitespace, canonical numbers, optional field selection.
 * Returns `undefined` when the text is not JSON.
 *
 * @example
 * canonicalJson('{ "b": 1, "a": [1.0, "x"] }'); // '{"a":[1,"x"],"b":1}'
 */
export function canonicalJson(text: string, fields: FingerprintFields = {}): string | undefined {
  const selecting = (fields.include?.length ?? 0) > 0 || (fields.exclude?.length ?? 0) > 0;
  if (!selecting) {
    const fast = fastCanonical(text);
    if (fast !== undefined) return fast;
  }
  let tree: Json;
  try {
    const p = new Parser(text);
    tree = p.value(0);
    p.ws();
    if (p.i !== text.length) return undefined;
  } catch (err) {
    if (err instanceof JsonSyntaxError) return undefined;
    throw err;
  }
  if (fields.include && fields.include.length > 0) {
    tree =
      pick(
        tree,
        fields.include.map((p) => p.split('.')),
      ) ?? null;
  }
  for (const path of fields.exclude ?? []) drop(tree, path.split('.'));
  const out: string[] = [];
  write(tree, out);
  return out.join('');
}

const decoder = new TextDecoder('utf-8', { fatal: false });

/**
 * SHA-256 (hex) of method, route and body. JSON bodies (any `application/json` or `+json`
 * type) are canonicalised first; other bodies are hashed byte for byte.
 *
 * @example
 * const a = requestFingerprint({ method: 'POST', route: '/orders', body: '{"a":1,"b":2}', contentType: 'application/json' });
 * const b = requestFingerprint({ method: 'POST', route: '/orders', body: '{"b":2, "a":1}', contentType: 'application/json' });
 * a === b; // true
 */
export function requestFingerprint(input: FingerprintInput, fields: FingerprintFields = {}): string {
  const head = `${input.method.toUpperCase()}\n${input.route}\n`;
  const isJson = input.contentType !== undefined && JSON_TYPE.test(input.contentType);
  if (isJson) {
    const text = typeof input.body === 'string' ? input.body : decoder.decode(input.body);
    const canonical = text.trim() === '' ? '' : canonicalJson(text, fields);
    // One update over the whole canonical text: the same bytes as hashing the parts in turn.
    if (canonical !== undefined)
      return createHash('sha256').update(`${head}json\n${canonical}`).digest('hex');
  }
  const h = createHash('sha256');
  h.update(`${head}raw\n`);
  h.update(input.body);
  return h.digest('hex');
}
