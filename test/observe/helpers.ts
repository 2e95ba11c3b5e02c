// Shared fixtures for the observe tests: a captured log sink and a Hono app served on port 0.
import type { AddressInfo } from 'node:net';
import { Writable } from 'node:stream';
import { serve } from '@hono/node-server';
import type { Hono } from 'hono';

export interface Sink {
  stream: Writable;
  /** Everything written so far, raw. */
  text(): string;
  /** Parsed JSON lines. */
  lines(): Record<string, unknown>[];
}

export function captureSink(): Sink {
  const chunks: string[] = [];
  const stream = new Writable({
    write(chunk: Buffer | string, _enc, cb) {
      chunks.push(typeof chunk === 'string' ? chunk : chunk.toString('utf8'));
      cb();
    },
  });
  const text = () => chunks.join('');
  return {
    stream,
    text,
    lines: () =>
      text()
        .split('\n')
        .filter((l) => l.trim() !== '')
        .map((l) => JSON.parse(l) as Record<string, unknown>),
  };
}

export interface Served {
  url: string;
  port: number;
  server: ReturnType<typeof serve>;
  close(): Promise<void>;
}

// biome-ignore lint/suspicious/noExplicitAny: any Env shape is fine for a test server
export async function serveApp(app: Hono<any>): Promise<Served> {
  return new Promise((resolve) => {
    const server = serve({ fetch: app.fetch, port: 0, hostname: '127.0.0.1' }, (info: AddressInfo) => {
      resolve({
        url: `http://127.0.0.1:${info.port}`,
        port: info.port,
        server,
        close: () =>
          new Promise<void>((res) => {
            const s = server as unknown as { closeAllConnections?: () => void; close(cb: () => void): void };
            s.closeAllConnections?.();
            s.close(() => res());
          }),
      });
    });
  });
}

/** Wait until `pred` holds or fail after `ms`. */
export async function until(pred: () => boolean, ms = 3000): Promise<void> {
  const deadline = Date.now() + ms;
  while (!pred()) {
    if (Date.now() > deadline) throw new Error('condition not met in time');
    await new Promise((r) => setTimeout(r, 10));
  }
}
