// The benchmarks measure the package as it ships: the compiled JavaScript in dist/, not the
// TypeScript sources through tsx. tsx's transform adds work to every function the sources create
// at run time (it wraps each one to keep its name) and nothing to the plain JavaScript of the
// libraries they are compared with, so measuring src/ would charge the loader to shoal alone.
// The `bench:*` scripts build first; types still come from the sources.
import { existsSync } from 'node:fs';
import { fileURLToPath } from 'node:url';

/**
 * Import a module of the built package by its path under src/ (and dist/), e.g.
 * `await shipped<typeof import('../src/ratelimit/index.js')>('ratelimit/index.js')`.
 */
export async function shipped<T>(path: string): Promise<T> {
  const url = new URL(`../dist/${path}`, import.meta.url);
  if (!existsSync(fileURLToPath(url))) {
    throw new Error(`dist/${path} is missing: run \`npm run build\` first (the bench:* scripts do)`);
  }
  return (await import(url.href)) as T;
}
