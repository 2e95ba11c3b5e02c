/**
 * Upgrade pass-through (WebSocket and friends): the request goes to one replica on a dedicated
 * connection and, from then on, bytes flow both ways untouched until either side closes.
 *
 * Upgraded connections are long-lived, so they are not counted as in-flight requests (a drain
 * would never finish); they are reported as `upgraded` in the stats and end when the replica exits.
 */
import { connect } from 'node:net';
import type { BackendState } from './backends.js';
import type { ClientConnection } from './connection.js';
import type { BalancerCore } from './core.js';
import { problemBytes } from './problems.js';

/**
 * Connect `conn` to `backend` and start relaying. `head` is the rewritten upgrade request head;
 * `rest` any bytes the client already sent after it.
 *
 * @example
 * openTunnel(conn, core, backend, req.upstream, null);
 */
export function openTunnel(
  conn: ClientConnection,
  core: BalancerCore,
  backend: BackendState,
  head: string,
  rest: Buffer | null,
): void {
  const client = conn.sock;
  const up = connect({ host: backend.host, port: backend.port, noDelay: true });
  conn.tunnel = up;
  backend.requests++;
  backend.upgraded++;
  let gotBytes = false;
  let counted = true;
  client.setTimeout(0);
  up.write(head, 'latin1');
  if (rest !== null && rest.length > 0) up.write(rest);
  up.on('data', (d: Buffer) => {
    gotBytes = true;
    if (!client.write(d)) up.pause();
  });
  up.on('drain', () => client.resume());
  up.on('end', () => client.end());
  let failure = '';
  up.on('error', (err: NodeJS.ErrnoException) => {
    failure = err.code ?? err.message;
  });
  up.on('close', () => {
    if (counted) {
      counted = false;
      backend.upgraded--;
    }
    if (client.destroyed) return;
    if (gotBytes) {
      client.destroySoon();
      return;
    }
    backend.failures++;
    if (failure) core.eject(backend, failure);
    client.end(
      problemBytes(
        'bad-gateway',
        'replica ' + backend.id + ' closed the upgrade connection: ' + (failure || 'no response'),
        {
          close: true,
          service: core.s.service,
        },
      ),
    );
  });
}
