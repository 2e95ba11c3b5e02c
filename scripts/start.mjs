// `npm start`: build, then run the reference fleet (examples/orders) with `shoal up`.
// `shoal up` runs in its own process group and this script forwards each signal to it exactly
// once: npm (and other wrappers) may signal the whole group as well as its child, and a duplicate
// SIGTERM would read as "stop now" to `up`, skipping the graceful drain.
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
  { stdio: 'inherit', detached: true },
);
// A terminal Ctrl-C reaches npm and this script together, and npm forwards it here once more:
// copies within a second count as one. A second Ctrl-C after that still means "stop now".
let lastForward = 0;
const forward = (sig) => () => {
  const now = Date.now();
  if (now - lastForward < 1000) return;
  lastForward = now;
  child.kill(sig);
};
process.on('SIGINT', forward('SIGINT'));
for (const sig of ['SIGTERM', 'SIGHUP']) process.on(sig, forward('SIGTERM'));
child.on('exit', (code, signal) => process.exit(code ?? (signal ? 1 : 0)));
