// Runs the whole suite with node's built-in test runner (TypeScript through tsx).
// Builds first, because the subpath and fleet tests use dist/ and the compiled reference app.
//   node scripts/test.mjs                 everything
//   node scripts/test.mjs --only unit     just test/unit
//   node scripts/test.mjs test/foo.test.ts  given files
import { spawnSync } from 'node:child_process';
import { readdirSync, statSync } from 'node:fs';
import { join } from 'node:path';

const args = process.argv.slice(2);
let files = args.filter((a) => a.endsWith('.ts'));
const onlyIdx = args.indexOf('--only');
const only = onlyIdx >= 0 ? args[onlyIdx + 1] : undefined;

function walk(dir, out = []) {
  for (const name of readdirSync(dir)) {
    const p = join(dir, name);
    if (statSync(p).isDirectory()) walk(p, out);
    else if (name.endsWith('.test.ts')) out.push(p);
  }
  return out;
}
if (files.length === 0) files = walk(only ? join('test', only) : 'test').sort();

if (!process.env.SHOAL_TEST_NO_BUILD) {
  const build = spawnSync('npm', ['run', '--silent', 'build:example'], { stdio: 'inherit' });
  if (build.status !== 0) {
    console.error('build failed; not running tests');
    process.exit(build.status ?? 1);
  }
}

const r = spawnSync(
  process.execPath,
  ['--import', 'tsx', '--test', '--test-concurrency=2', '--test-timeout=240000', ...files],
  { stdio: 'inherit', env: { ...process.env, NODE_ENV: 'test' } },
);
process.exit(r.status ?? 1);
