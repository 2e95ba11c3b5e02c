// `npm start`: build, then run the reference fleet (examples/orders) with `shoal up`.
// Ctrl-C reaches `shoal up` directly (same terminal process group); this script just waits for
// it to finish its orderly shutdown, and forwards SIGTERM/SIGHUP, which only this script receives.
import { spawn, spawnSync } from 'node:child_process';
import { existsSync } from 'node:fs';

const CONFIG = 'examples/orders/shoal.config.ts';

const build = spawnSync('npm', ['run', '--silent', 'build:example'], { stdio: 'inherit' });
if (build.status !== 0) process.exit(build.status ?? 1);
if (!existsSync('dist/cli/main.js')) {
  console.error('shoal: the fleet runner is not built (dist/cli/main.js missing); nothing to start.');
  process.exit(1);
}
if (!existsSync(CONFIG)) {
  console.error(`shoal: ${CONFIG} is missing; nothing to start.`);
  process.exit(1);
}
const child = spawn(
  process.execPath,
  ['dist/cli/main.js', 'up', '--config', CONFIG, ...process.argv.slice(2)],
  {
    stdio: 'inherit',
  },
);
process.on('SIGINT', () => {});
for (const sig of ['SIGTERM', 'SIGHUP']) process.on(sig, () => child.kill('SIGTERM'));
child.on('exit', (code, signal) => process.exit(code ?? (signal ? 1 : 0)));
