import { createServer } from 'node:net';

/**
 * Ask the kernel for a TCP port that is free on 127.0.0.1 right now. Another process may take it
 * before the caller binds, so callers that must not collide keep their own set of handed-out ports.
 *
 * @example
 * const port = await freePort();
 */
export function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const srv = createServer();
    srv.unref();
    srv.once('error', reject);
    srv.listen(0, '127.0.0.1', () => {
      const addr = srv.address();
      const port = typeof addr === 'object' && addr ? addr.port : 0;
      srv.close(() => resolve(port));
    });
  });
}
