// The published shape of the package: every declared subpath resolves through the package's own
// name after the build, and every subpath the README or docs mention is declared.
// Needs dist/: `npm run build` first (scripts/test.mjs does it unless SHOAL_TEST_NO_BUILD is set).
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { existsSync, mkdtempSync, readdirSync, readFileSync, rmSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, relative } from 'node:path';
import { test } from 'node:test';
import { fileURLToPath } from 'node:url';

const root = fileURLToPath(new URL('../../', import.meta.url));
const pkg = JSON.parse(readFileSync(join(root, 'package.json'), 'utf8')) as {
  name: string;
  bin?: Record<string, string>;
  exports: Record<string, string | { types?: string; default?: string }>;
};
const subpaths = Object.keys(pkg.exports);
const specifier = (subpath: string) => (subpath === '.' ? pkg.name : `${pkg.name}/${subpath.slice(2)}`);

function markdownFiles(): string[] {
  const out = ['README.md'];
  const walk = (dir: string) => {
    if (!existsSync(join(root, dir))) return;
    for (const name of readdirSync(join(root, dir))) {
      const p = join(dir, name);
      if (statSync(join(root, p)).isDirectory()) walk(p);
      else if (name.endsWith('.md')) out.push(p);
    }
  };
  walk('docs');
  return out.filter((f) => existsSync(join(root, f)));
}

test('package.json declares the package name, a bin and subpath exports with types', () => {
  assert.equal(pkg.name, 'shoal');
  assert.ok(pkg.bin?.shoal, 'a "shoal" bin');
  assert.ok(subpaths.length >= 10, `expected one subpath per capability, got ${subpaths.join(', ')}`);
  for (const [subpath, target] of Object.entries(pkg.exports)) {
    if (subpath === './package.json') continue;
    assert.equal(typeof target, 'object', `${subpath}: expected { types, default }`);
    const t = target as { types?: string; default?: string };
    assert.match(t.default ?? '', /^\.\/dist\/.+\.js$/, `${subpath}: default points into dist/`);
    assert.equal(t.types, t.default?.replace(/\.js$/, '.d.ts'), `${subpath}: types beside the module`);
  }
});

test('every declared subpath resolves and loads through the package self-reference after the build', () => {
  assert.ok(
    existsSync(join(root, 'dist')),
    'dist/ is missing: run `npm run build` (scripts/test.mjs builds unless SHOAL_TEST_NO_BUILD is set)',
  );
  // One fresh process in the repo root, importing by the public name exactly as a user would.
  const script = `
    const results = {};
    for (const s of ${JSON.stringify(subpaths.map(specifier))}) {
      try {
        const m = s.endsWith('.json') ? await import(s, { with: { type: 'json' } }) : await import(s);
        results[s] = { ok: true, exports: Object.keys(m).length };
      } catch (err) {
        results[s] = { ok: false, error: String(err && err.message || err).split('\\n')[0] };
      }
    }
    process.stdout.write(JSON.stringify(results));
  `;
  const r = spawnSync(process.execPath, ['--input-type=module', '-e', script], {
    cwd: root,
    encoding: 'utf8',
    timeout: 60_000,
    env: { ...process.env, NODE_OPTIONS: '' },
  });
  assert.equal(r.status, 0, `child failed: ${r.stderr}`);
  const results = JSON.parse(r.stdout) as Record<string, { ok: boolean; exports?: number; error?: string }>;
  const failed = Object.entries(results)
    .filter(([, v]) => !v.ok)
    .map(([k, v]) => `  ${k}: ${v.error}`);
  assert.deepEqual(failed, [], `subpaths that do not load:\n${failed.join('\n')}`);
  for (const [s, v] of Object.entries(results)) {
    if (s.endsWith('/package.json')) continue;
    assert.ok((v.exports ?? 0) > 0, `${s} loads but exports nothing`);
  }
  // The declaration files a TypeScript user needs are there too.
  for (const [subpath, target] of Object.entries(pkg.exports)) {
    if (typeof target === 'string' || !target.types) continue;
    assert.ok(existsSync(join(root, target.types)), `${subpath}: ${target.types} missing after the build`);
  }
});

test('the bin target exists after the build', () => {
  for (const [name, target] of Object.entries(pkg.bin ?? {})) {
    assert.ok(existsSync(join(root, target)), `bin "${name}": ${target} missing after the build`);
  }
});

test('every subpath mentioned in README.md and docs/ is declared in package.json exports', () => {
  const declared = new Set(subpaths.map(specifier));
  // `shoal/x` inside quotes or backticks: import specifiers and inline code.
  const mention = /["'`](shoal(?:\/[a-z0-9][a-z0-9-]*)+)["'`]/g;
  const missing: string[] = [];
  let seen = 0;
  for (const file of markdownFiles()) {
    const text = readFileSync(join(root, file), 'utf8');
    for (const m of text.matchAll(mention)) {
      seen++;
      const spec = m[1]!;
      if (!declared.has(spec)) {
        const line = text.slice(0, m.index).split('\n').length;
        missing.push(`${relative(root, join(root, file))}:${line} ${spec}`);
      }
    }
  }
  assert.deepEqual(missing, [], `documented but not exported:\n${missing.join('\n')}`);
  assert.ok(seen > 0, 'the docs mention at least one subpath (so this check has something to check)');
});

test('runtime assets (Lua scripts, SQL migrations) are in dist/ beside the modules that load them', () => {
  const assets: string[] = [];
  const walk = (dir: string) => {
    for (const name of readdirSync(join(root, dir))) {
      const p = join(dir, name);
      if (statSync(join(root, p)).isDirectory()) walk(p);
      else if (/\.(lua|sql)$/.test(name)) assets.push(p);
    }
  };
  walk('src');
  assert.ok(assets.length > 0, 'the toolkit ships Lua scripts and migrations');
  const stale = assets.filter((p) => {
    const out = join(root, 'dist', relative('src', p));
    return !existsSync(out) || readFileSync(out, 'utf8') !== readFileSync(join(root, p), 'utf8');
  });
  assert.deepEqual(stale, [], `missing or stale in dist/ (scripts/copy-assets.mjs): ${stale.join(', ')}`);
});

test('the built shoal/postgres applies the shipped migrations from dist/', async () => {
  const { testSchema } = await import('../helpers/stores.js');
  const s = await testSchema('pkg');
  try {
    const script = `
      import { createPool, migrateToolkit } from 'shoal/postgres';
      const pool = createPool(process.env.PKG_TEST_URL, { max: 1 });
      const r = await migrateToolkit(pool);
      await pool.end();
      process.stdout.write(JSON.stringify(r.applied.map((m) => m.id + '_' + m.name + '.sql')));
    `;
    const r = spawnSync(process.execPath, ['--input-type=module', '-e', script], {
      cwd: root,
      encoding: 'utf8',
      timeout: 60_000,
      env: { ...process.env, NODE_OPTIONS: '', PKG_TEST_URL: s.url },
    });
    assert.equal(r.status, 0, r.stderr);
    const shipped = readdirSync(join(root, 'src/stores/postgres/migrations'))
      .filter((f) => f.endsWith('.sql'))
      .sort()
      .map((f) => f.replace(/^0+/, ''));
    assert.deepEqual(JSON.parse(r.stdout), shipped);
    const rec = await s.pool.query('SELECT count(*)::int AS n FROM shoal_migrations');
    assert.equal(rec.rows[0].n, shipped.length);
  } finally {
    await s.drop();
  }
});

test('the built package starts the log writer thread from dist/ (plain node, no TypeScript loader)', () => {
  const dir = mkdtempSync(join(tmpdir(), 'shoal-pkg-writer-'));
  try {
    const file = join(dir, 'log.ndjson');
    // Lines reach the file without flush() or exit only if the writer thread runs: with the
    // logging thread's own timer stopped by unref and the process kept alive by a timer here.
    const script = `
      import { createLogDestination, createLogger } from 'shoal/observe';
      const dest = createLogDestination({ path: ${JSON.stringify(file)}, thread: true, flushIntervalMs: 30 });
      const writer = Object.getOwnPropertySymbols(dest).map((s) => dest[s]).find((v) => v && typeof v.threadId === 'number');
      if (!writer) throw new Error('no writer thread');
      let online = false;
      writer.on('online', () => { online = true; });
      writer.on('error', (e) => { console.error('writer failed:', e.message); process.exit(2); });
      const log = createLogger({ service: 's', instanceId: 'i', destination: dest });
      log.info('hello');
      const { readFileSync } = await import('node:fs');
      const start = Date.now();
      const check = setInterval(() => {
        if (online && readFileSync(${JSON.stringify(file)}, 'utf8').includes('"msg":"hello"')) {
          clearInterval(check);
          console.log('written by the writer thread');
          process.exit(0);
        }
        if (Date.now() - start > 10000) { console.error('nothing written, online=' + online); process.exit(1); }
      }, 20);
    `;
    const r = spawnSync(process.execPath, ['--input-type=module', '-e', script], {
      cwd: root,
      encoding: 'utf8',
      timeout: 60_000,
      env: { ...process.env, NODE_OPTIONS: '' },
    });
    assert.equal(r.status, 0, r.stderr);
    assert.match(r.stdout, /written by the writer thread/);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});
