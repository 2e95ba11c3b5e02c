/**
 * `shoal/enrich`: facts about a request that every instance must derive the same way,
 * starting with the client IP behind trusted proxies.
 *
 * @example
 * import { createClientIp } from 'shoal/enrich';
 * const ipOf = createClientIp({ trustedProxies: 'loopback' });
 * ipOf('127.0.0.1', '203.0.113.9'); // '203.0.113.9'
 */
export * from './client-ip.js';
