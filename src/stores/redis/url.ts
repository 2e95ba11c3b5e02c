/**
 * Parse the four REDIS_URL forms the toolkit accepts:
 *
 * - `redis://[user:password@]host:port[/db]`            a single server
 * - `rediss://...`                                       the same over TLS
 * - `redis-sentinel://[:password@]h1:p1,h2:p2/master[/db]` Sentinel; password is the data nodes'
 *    (add `?sentinelPassword=` for the sentinels' own)
 * - `redis-cluster://[:password@]h1:p1,h2:p2`             Cluster seed nodes
 *
 * WHATWG `URL` rejects comma-separated hosts, so this is a small parser of its own.
 */

export interface RedisHost {
  host: string;
  port: number;
}

export type RedisTarget =
  | {
      kind: 'single';
      tls: boolean;
      host: string;
      port: number;
      db: number;
      username?: string;
      password?: string;
    }
  | {
      kind: 'sentinel';
      sentinels: RedisHost[];
      name: string;
      db: number;
      password?: string;
      sentinelPassword?: string;
      tls: boolean;
    }
  | { kind: 'cluster'; nodes: RedisHost[]; password?: string; username?: string; tls: boolean };

function hosts(list: string, defaultPort: number): RedisHost[] | string {
  const out: RedisHost[] = [];
  for (const part of list.split(',')) {
    const m = /^(\[[^\]]+\]|[^:]+)(?::(\d+))?$/.exec(part.trim());
    if (!m?.[1]) return `bad host "${part}"`;
    const port = m[2] === undefined ? defaultPort : Number(m[2]);
    if (!(port > 0 && port < 65536)) return `bad port in "${part}"`;
    out.push({ host: m[1].replace(/^\[|\]$/g, ''), port });
  }
  return out;
}

/**
 * Parse a Redis URL; returns a description or an error string naming what is wrong.
 *
 * @example
 * parseRedisUrl('redis-sentinel://10.0.0.1:26379,10.0.0.2:26379/mymaster');
 * // { kind: 'sentinel', sentinels: [...], name: 'mymaster', db: 0, tls: false }
 */
export function parseRedisUrl(input: string): RedisTarget | { error: string } {
  const m =
    /^(redis|rediss|redis-sentinel|redis-cluster):\/\/(?:([^@/]*)@)?([^/?#]+)(\/[^?#]*)?(?:\?([^#]*))?$/.exec(
      input.trim(),
    );
  if (!m)
    return {
      error: 'expected redis://, rediss://, redis-sentinel:// or redis-cluster:// followed by host:port',
    };
  const scheme = m[1]!;
  const auth = m[2];
  let username: string | undefined;
  let password: string | undefined;
  if (auth !== undefined && auth !== '') {
    const i = auth.indexOf(':');
    if (i === -1) username = decodeURIComponent(auth);
    else {
      username = auth.slice(0, i) === '' ? undefined : decodeURIComponent(auth.slice(0, i));
      password = decodeURIComponent(auth.slice(i + 1));
    }
  }
  const params = new URLSearchParams(m[5] ?? '');
  const tls = scheme === 'rediss' || params.get('tls') === 'true';
  const pathParts = (m[4] ?? '').split('/').filter((s) => s !== '');
  const parseDb = (s: string | undefined): number | string => {
    if (s === undefined) return 0;
    const n = Number(s);
    return Number.isInteger(n) && n >= 0 && n <= 15 ? n : `bad database number "${s}"`;
  };
  if (scheme === 'redis' || scheme === 'rediss') {
    const h = hosts(m[3]!, 6379);
    if (typeof h === 'string') return { error: h };
    if (h.length !== 1) return { error: 'several hosts need redis-sentinel:// or redis-cluster://' };
    const db = parseDb(pathParts[0]);
    if (typeof db === 'string') return { error: db };
    return { kind: 'single', tls, host: h[0]!.host, port: h[0]!.port, db, username, password };
  }
  if (scheme === 'redis-sentinel') {
    const h = hosts(m[3]!, 26379);
    if (typeof h === 'string') return { error: h };
    const name = pathParts[0];
    if (!name) return { error: 'redis-sentinel:// needs the master name as the path, e.g. /mymaster' };
    const db = parseDb(pathParts[1]);
    if (typeof db === 'string') return { error: db };
    return {
      kind: 'sentinel',
      sentinels: h,
      name,
      db,
      password,
      sentinelPassword: params.get('sentinelPassword') ?? undefined,
      tls,
    };
  }
  const h = hosts(m[3]!, 6379);
  if (typeof h === 'string') return { error: h };
  return { kind: 'cluster', nodes: h, password, username, tls };
}
