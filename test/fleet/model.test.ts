// The app model and CLI error paths: validation names file, field, expected and found; configs load
// from .ts/.mjs/.json; restart/ps without a running fleet fail clearly; usage errors exit 2.
import assert from 'node:assert/strict';
import { mkdtempSync, readdirSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, test } from 'node:test';
import { Worker } from 'node:worker_threads';
import { ShoalError } from '../../src/errors.js';
import { type FleetStateFile, STATE_DIR, writeStateFile } from '../../src/fleet/control.js';
import { loadFleetConfig } from '../../src/fleet/load-config.js';
import { splitCommand, validateFleet } from '../../src/fleet/model.js';
import { FIXTURE, type FleetDir, fleetDir, runCli } from './helpers.js';

const dirs: FleetDir[] = [];
after(() => {
  for (const d of dirs) d.cleanup();
});

function invalid(raw: unknown): ShoalError {
  try {
    validateFleet(raw, 'shoal.config.ts');
  } catch (err) {
    assert.ok(err instanceof ShoalError);
    assert.equal(err.code, 'fleet.config_invalid');
    return err;
  }
  assert.fail('expected a validation error');
}

test('valid config gets defaults and dependency order', () => {
  const m = validateFleet(
    {
      resources: { redis: true },
      services: {
        web: { command: 'node web.js', port: 8081, dependsOn: ['api'] },
        api: { command: ['node', 'api.js'], replicas: 3, port: 8080, dependsOn: ['redis'], drainDelay: '2s' },
      },
    },
    'x.json',
  );
  assert.deepEqual(
    m.services.map((s) => s.name),
    ['api', 'web'],
  );
  const api = m.services[0]!;
  assert.equal(api.replicas, 3);
  assert.equal(api.drainDelayMs, 2000);
  assert.equal(api.health.ready, '/health/ready');
  assert.equal(api.restart.maxCrashes, 5);
  assert.equal(m.services[1]!.replicas, 1);
  assert.deepEqual(m.services[1]!.command, ['node', 'web.js']);
  assert.deepEqual(m.resources.redis, { url: undefined });
  assert.equal(m.resources.postgres, undefined);
});

test('type errors name the file, the field path, what was expected and what was found', () => {
  const err = invalid({ services: { api: { command: 'node a.js', replicas: 'three', port: 70000 } } });
  assert.match(
    err.message,
    /shoal\.config\.ts: services\.api\.replicas: expected .*integer.*, found "three"/,
  );
  assert.match(
    err.message,
    /shoal\.config\.ts: services\.api\.port: expected an integer from 0 to 65535, found number 70000/,
  );
  assert.match(err.message, /2 problems/);
});

test('missing and misspelt fields are named with a suggestion', () => {
  const err = invalid({ services: { api: { command: 'node a.js', replica: 2 } } });
  assert.match(
    err.message,
    /services\.api\.port: expected an integer from 0 to 65535 \(required\), found nothing/,
  );
  assert.match(
    err.message,
    /services\.api\.replica: expected no such field \(did you mean "replicas"\?\), found number 2/,
  );
});

test('unknown dependencies, undeclared resources and cycles are reported', () => {
  const err = invalid({
    services: {
      a: { command: 'x', port: 1, dependsOn: ['b', 'redis', 'nope'] },
      b: { command: 'x', port: 2, dependsOn: ['a'] },
    },
  });
  assert.match(
    err.message,
    /services\.a\.dependsOn\[1\]: expected a declared resource \(add resources\.redis: true\), found "redis"/,
  );
  assert.match(err.message, /services\.a\.dependsOn\[2\]: expected one of: "b", found "nope"/);
  assert.match(err.message, /expected no dependency cycle, found the cycle a -> b -> a/);
});

test('duplicate ports, bad durations and bad names are reported', () => {
  const err = invalid({
    services: {
      api: { command: 'x', port: 8080 },
      Web: { command: 'x', port: 8080 },
    },
  });
  const dur = invalid({ services: { api: { command: 'x', port: 8080, stopTimeout: 'soon' } } });
  assert.match(dur.message, /services\.api\.stopTimeout: expected a duration such as 500ms.*, found "soon"/);
  assert.match(
    err.message,
    /services\.Web\.port: expected a port not already used by service "api", found number 8080/,
  );
  assert.match(err.message, /services\.Web: expected a service name of lowercase letters/);
  const owned = invalid({
    services: { api: { command: 'x', port: 1, env: { SHOAL_SERVICE: 'orders', PORT: 1 } } },
  });
  assert.match(
    owned.message,
    /services\.api\.env\.PORT: expected no PORT: the fleet sets it for every replica .*, found number 1/,
  );
  assert.match(owned.message, /\(1 problem\)/);
});

test('splitCommand honours quotes', () => {
  assert.deepEqual(splitCommand(`node "my app.js" --x='a b' c\\ d`), ['node', 'my app.js', '--x=a b', 'c d']);
  assert.throws(() => splitCommand('node "oops'), /unterminated/);
});

test('configs load from .ts (defineFleet), .mjs and .json', async () => {
  const src = new URL('../../src/fleet/index.ts', import.meta.url).href;
  const ts = fleetDir(
    `import { defineFleet } from ${JSON.stringify(src)};\n` +
      `const replicas: number = 2;\n` +
      `export default defineFleet({ services: { api: { command: 'node ${FIXTURE}', replicas, port: 0 } } });\n`,
    'ts',
  );
  const mjs = fleetDir(
    `export default { services: { api: { command: 'node x.js', port: 0, replicas: 4 } } };\n`,
    'mjs',
  );
  const json = fleetDir({ name: 'demo', services: { api: { command: 'node x.js', port: 0 } } });
  dirs.push(ts, mjs, json);
  assert.equal((await loadFleetConfig(ts.config)).model.services[0]!.replicas, 2);
  assert.equal((await loadFleetConfig(undefined, mjs.dir)).model.services[0]!.replicas, 4);
  const j = await loadFleetConfig(json.dir);
  assert.equal(j.model.name, 'demo');
  assert.equal(j.dir, json.dir);
});

test('CLI: shoal up with an invalid config exits 1 naming file, field, expected and found', async () => {
  const bad = fleetDir({ services: { api: { command: 'node x.js', port: 'http' } } });
  dirs.push(bad);
  const r = await runCli(['up', '--config', bad.config]);
  assert.equal(r.code, 1, r.stdout + r.stderr);
  const text = r.stdout + r.stderr;
  assert.match(
    text,
    /shoal\.config\.json: services\.api\.port: expected an integer from 0 to 65535, found "http"/,
  );
});

test('CLI: restart and ps with no fleet running exit 1 with a clear message', async () => {
  const none = fleetDir({ services: { api: { command: 'node x.js', port: 0 } } });
  dirs.push(none);
  const r = await runCli(['restart', 'api', '--config', none.config]);
  assert.equal(r.code, 1);
  assert.match(
    r.stderr,
    /No fleet is running here: .*\.shoal\/fleet\.json does not exist\. Start one with `shoal up`/,
  );
  const p = await runCli(['ps'], { cwd: none.dir });
  assert.equal(p.code, 1);
  assert.match(p.stderr, /No fleet is running here/);
});

test('CLI: usage errors exit 2 and --help lists the commands', async () => {
  const help = await runCli(['--help']);
  assert.equal(help.code, 0);
  for (const c of ['up', 'restart', 'ps']) assert.match(help.stdout, new RegExp(`shoal ${c}`));
  const unknown = await runCli(['deploy']);
  assert.equal(unknown.code, 2);
  assert.match(unknown.stderr, /unknown command "deploy"; commands: up, restart, ps, help/);
  const badOpt = await runCli(['up', '--replica', 'api=2']);
  assert.equal(badOpt.code, 2);
  assert.match(badOpt.stderr, /unknown option --replica; known options: --config\/-c, --replicas\/-r/);
  const badReplicas = await runCli(['up', '--replicas', 'api=lots']);
  assert.equal(badReplicas.code, 2);
  assert.match(badReplicas.stderr, /--replicas expects <service>=<n>.*found "api=lots"/);
  const noService = await runCli(['restart']);
  assert.equal(noService.code, 2);
  assert.match(noService.stderr, /missing <service>/);
});

test('the state file is replaced whole: a reader polling it never sees it half-written', async () => {
  const dir = mkdtempSync(join(tmpdir(), 'shoal-state-'));
  const path = join(dir, STATE_DIR, 'fleet.json');
  const state = (i: number): FleetStateFile => ({
    version: 1,
    pid: process.pid,
    name: `fleet-${i}`,
    configFile: join(dir, 'shoal.config.ts'),
    startedAt: new Date(0).toISOString(),
    control: { url: 'http://127.0.0.1:1', token: 'x'.repeat(64) },
    services: Array.from({ length: 50 }, (_, s) => ({
      name: `svc${s}`,
      url: `http://127.0.0.1:${9000 + s}`,
    })),
  });
  writeStateFile(path, state(0));
  // The reader runs on its own thread so it can open the file between any two steps of a write.
  const reader = new Worker(
    `const { readFileSync } = require('node:fs');
     const { parentPort, workerData } = require('node:worker_threads');
     let reads = 0, bad = 0, stop = false;
     parentPort.on('message', () => { stop = true; });
     (function loop() {
       for (let i = 0; i < 200; i++) {
         try { JSON.parse(readFileSync(workerData, 'utf8')); reads++; } catch { bad++; }
       }
       if (stop) parentPort.postMessage({ reads, bad }); else setImmediate(loop);
     })();`,
    { eval: true, workerData: path },
  );
  try {
    const until = Date.now() + 1500;
    for (let i = 1; Date.now() < until; i++) {
      writeStateFile(path, state(i));
      if (i % 50 === 0) await new Promise((r) => setImmediate(r));
    }
    reader.postMessage('stop');
    const { reads, bad } = await new Promise<{ reads: number; bad: number }>((res) =>
      reader.once('message', res),
    );
    assert.ok(reads > 100, `the reader read the file only ${reads} times`);
    assert.equal(bad, 0, `${bad} of ${reads + bad} reads saw a partial file`);
    assert.deepEqual(readdirSync(join(dir, STATE_DIR)), ['fleet.json'], 'no temporary file is left behind');
  } finally {
    await reader.terminate();
    rmSync(dir, { recursive: true, force: true });
  }
});
