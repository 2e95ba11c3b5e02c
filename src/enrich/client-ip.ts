/**
 * The client's IP address, honouring `X-Forwarded-For` only when the TCP peer is a trusted proxy.
 *
 * Why: a rate limit or an audit log keyed by IP is worthless if the client can pick its own IP by
 * sending a forged header. The header is believed hop by hop from the right, and only while each
 * hop is a configured proxy; the first address that is not a proxy is the client.
 */
import { BlockList, isIP } from 'node:net';
import { getConnInfo } from '@hono/node-server/conninfo';
import type { Context } from 'hono';
import { ShoalError } from '../errors.js';

/** Options for {@link createClientIp}. */
export interface ClientIpOptions {
  /**
   * Proxies whose `X-Forwarded-For` is believed: CIDRs or single addresses, as an array or a
   * comma-separated string. Keywords: `loopback` (default: the fleet's local balancer), `private`
   * (RFC 1918 + IPv6 ULA), `linklocal`, `none`.
   */
  trustedProxies?: string | string[];
}

/** Resolves `(socket peer, X-Forwarded-For)` to the client address. */
export type ClientIpResolver = (
  remoteAddress: string | undefined,
  forwardedFor: string | null | undefined,
) => string;

/**
 * Returned when neither the socket nor a trusted header names an address.
 *
 * @example
 * if (ipOf(remote, xff) === UNKNOWN_CLIENT_IP) log.warn('request without a client address');
 */
export const UNKNOWN_CLIENT_IP = 'unknown';

const KEYWORDS: Record<string, string[]> = {
  loopback: ['127.0.0.0/8', '::1/128'],
  private: ['10.0.0.0/8', '172.16.0.0/12', '192.168.0.0/16', 'fc00::/7'],
  linklocal: ['169.254.0.0/16', 'fe80::/10'],
  none: [],
};

/** Strip an IPv4-mapped IPv6 prefix, brackets and a port so equal addresses compare equal. */
function normalise(raw: string): string | undefined {
  let s = raw.trim();
  if (s === '') return undefined;
  if (s.startsWith('[')) {
    const end = s.indexOf(']');
    if (end === -1) return undefined;
    s = s.slice(1, end);
  } else if (/^\d{1,3}(?:\.\d{1,3}){3}:\d+$/.test(s)) {
    s = s.slice(0, s.lastIndexOf(':'));
  }
  const zone = s.indexOf('%');
  if (zone !== -1) s = s.slice(0, zone);
  const mapped = /^::ffff:(\d{1,3}(?:\.\d{1,3}){3})$/i.exec(s);
  if (mapped) s = mapped[1]!;
  const family = isIP(s);
  if (family === 0) return undefined;
  return family === 6 ? s.toLowerCase() : s;
}

function buildList(spec: string | string[]): BlockList {
  const entries = (Array.isArray(spec) ? spec : spec.split(',')).map((e) => e.trim()).filter((e) => e !== '');
  const list = new BlockList();
  for (const entry of entries) {
    const expanded = KEYWORDS[entry.toLowerCase()] ?? [entry];
    for (const cidr of expanded) {
      const [addr, bits, extra] = cidr.split('/');
      const ip = addr === undefined ? undefined : normalise(addr);
      const family = ip === undefined ? 0 : isIP(ip);
      const max = family === 4 ? 32 : 128;
      const prefix = bits === undefined ? max : /^\d{1,3}$/.test(bits) ? Number(bits) : Number.NaN;
      if (ip === undefined || extra !== undefined || !(prefix >= 0 && prefix <= max)) {
        throw new ShoalError(
          'config.invalid',
          `trustedProxies: "${entry}" is not a CIDR, an IP address or one of loopback, private, linklocal, none`,
        );
      }
      list.addSubnet(ip, prefix, family === 4 ? 'ipv4' : 'ipv6');
    }
  }
  return list;
}

/**
 * Build a resolver. It returns the peer address unless the peer is a trusted proxy, in which case
 * it walks `X-Forwarded-For` from the right past trusted hops and returns the first untrusted one.
 * A malformed hop stops the walk at the proxy that reported it, so garbage cannot pick an address.
 *
 * @example
 * const clientIp = createClientIp({ trustedProxies: ['loopback', '10.0.0.0/8'] });
 * clientIp('127.0.0.1', '203.0.113.9, 10.0.0.5'); // '203.0.113.9'
 * clientIp('198.51.100.7', '1.2.3.4');             // '198.51.100.7' (peer not trusted)
 */
export function createClientIp(options: ClientIpOptions = {}): ClientIpResolver {
  const list = buildList(options.trustedProxies ?? 'loopback');
  const trusted = (ip: string) => list.check(ip, isIP(ip) === 4 ? 'ipv4' : 'ipv6');
  return (remoteAddress, forwardedFor) => {
    const peer = remoteAddress === undefined ? undefined : normalise(remoteAddress);
    if (peer === undefined) return UNKNOWN_CLIENT_IP;
    if (!trusted(peer) || !forwardedFor) return peer;
    const hops = forwardedFor.split(',');
    let current = peer;
    for (let i = hops.length - 1; i >= 0; i--) {
      const hop = normalise(hops[i]!);
      if (hop === undefined) return current;
      current = hop;
      if (!trusted(hop)) return hop;
    }
    return current;
  };
}

/**
 * The client IP of a Hono request served by `@hono/node-server` (peer from `getConnInfo`).
 * Outside that server (e.g. `app.request()` in tests) there is no socket, so the peer is unknown
 * and forwarded headers are ignored.
 *
 * @example
 * const resolve = createClientIp({ trustedProxies: config.trustedProxies });
 * app.get('/whoami', (c) => c.text(clientIpOf(c, resolve)));
 */
export function clientIpOf(c: Context, resolver: ClientIpResolver): string {
  let remote: string | undefined;
  try {
    remote = getConnInfo(c).remote.address;
  } catch {
    remote = undefined;
  }
  return resolver(remote, c.req.header('x-forwarded-for'));
}
