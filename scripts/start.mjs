// `npm start`: build, then run the reference fleet (examples/orders) with `shoal up`.
import { spawnSync } from 'node:child_process';
import { existsSync } from 'node:fs';

const build = spawnSync('npm', ['run', '--silent', 'build:example'], { stdio: 'inherit' });
if (build.status !== 0) process.exit(build.status ?? 1);
if (!existsSync('dist/cli/main.js')) {
  console.error('shoal: the fleet runner is not built yet (dist/cli/main.js missing); nothing to start.');
  process.exit(1);
}
const r = spawnSync(
  process.execPath,
  ['dist/cli/main.js', 'up', '--config', 'examples/orders/shoal.config.ts'],
  {
    stdio: 'inherit',
  },
);
process.exit(r.status ?? 1);
