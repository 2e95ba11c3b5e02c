#!/usr/bin/env node
/**
 * The `shoal` command line: argument parsing and output only; the work happens in src/fleet.
 * Exit codes: 0 success, 1 the command failed (e.g. no fleet running), 2 bad usage.
 */
import { readFileSync, realpathSync } from 'node:fs';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { parseArgs } from 'node:util';
import { isShoalError, ShoalError } from '../errors.js';
import {
  type FleetStatus,
  formatUptime,
  readStateFile,
  renderTable,
  requestRestart,
  requestStatus,
  runUp,
  stateFilePath,
} from '../fleet/index.js';

const HELP: Record<string, string> = {
  main: `shoal - run a Node service as N replicas behind a per-request balancer

Usage:
  shoal up [--config <path>] [--replicas <service>=<n>]...
  shoal restart <service> [--config <path>]
  shoal ps [--config <path>] [--json]
  shoal help [<command>]

Commands:
  up        Start the fleet described by shoal.config.ts (.mts, .js, .mjs, .json) and stream its logs
  restart   Rolling restart of one service of the running fleet, one replica at a time, no dropped requests
  ps        Show the running fleet's replicas: pid, port, state, readiness, load, restarts, uptime

Options:
  -c, --config <path>   Config file or its directory (default: shoal.config.* in the current directory)
  -h, --help            Show help (also: shoal <command> --help)
  -v, --version         Print the version

Exit codes: 0 success, 1 the command failed (e.g. no fleet is running), 2 bad usage.
`,
  up: `Usage: shoal up [--config <path>] [--replicas <service>=<n>]...

Starts resources (redis, postgres), then each service's replicas in dependency order, each behind
an HTTP balancer on the service's public port. Prints the public URLs and the status table, then
the merged replica logs. Crashed replicas restart with exponential backoff; a replica that keeps
crashing is marked crash-looping. Ctrl-C or SIGTERM stops everything in reverse order
(a second Ctrl-C kills the replicas at once).

Options:
  -c, --config <path>          Config file or directory (default: shoal.config.* in the current directory)
  -r, --replicas <service>=<n> Override a service's replica count; repeatable, or comma-separated
`,
  restart: `Usage: shoal restart <service> [--config <path>]

Rolls <service> of the running fleet one replica at a time: start a new replica, wait until the
balancer sees it ready, stop routing to the old one, wait for its in-flight requests, SIGTERM it,
wait for it to exit. Fails (exit 1) if no fleet is running for the config's directory.

Options:
  -c, --config <path>   Config file or directory the fleet was started with (default: current directory)
`,
  ps: `Usage: shoal ps [--config <path>] [--json]

Shows the running fleet: service, replica, pid, port, state, ready, in-flight, requests, restarts,
uptime. Fails (exit 1) if no fleet is running for the config's directory.

Options:
  -c, --config <path>   Config file or directory the fleet was started with (default: current directory)
      --json            Print the full status as JSON
`,
};

const COMMANDS = ['up', 'restart', 'ps', 'help'] as const;
type Command = (typeof COMMANDS)[number];

/** Output streams, replaceable for tests. */
export interface CliIo {
  out: NodeJS.WritableStream & { isTTY?: boolean };
  err: NodeJS.WritableStream;
  cwd: string;
}

function version(): string {
  const pkg = JSON.parse(readFileSync(new URL('../../package.json', import.meta.url), 'utf8')) as {
    version: string;
  };
  return pkg.version;
}

function usage(message: string, command?: string): ShoalError {
  const hint = command ? `shoal ${command} --help` : 'shoal --help';
  return new ShoalError('cli.usage', `${message}\nRun \`${hint}\` for usage.`);
}

function parse(
  command: string,
  args: string[],
  options: Record<string, { type: 'string' | 'boolean'; short?: string; multiple?: boolean }>,
) {
  try {
    return parseArgs({ args, options, allowPositionals: true, strict: true });
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    const msg = (err as Error).message;
    const opt = /'(-[^']*)'/.exec(msg)?.[1];
    if (code === 'ERR_PARSE_ARGS_UNKNOWN_OPTION') {
      const known = Object.entries(options).map(([k, o]) => `--${k}${o.short ? `/-${o.short}` : ''}`);
      throw usage(
        `shoal ${command}: unknown option ${opt ?? msg}; known options: ${known.join(', ')}`,
        command,
      );
    }
    if (code === 'ERR_PARSE_ARGS_INVALID_OPTION_VALUE') {
      throw usage(`shoal ${command}: option ${opt ?? ''} needs a value (${msg})`, command);
    }
    throw usage(`shoal ${command}: ${msg}`, command);
  }
}

/**
 * Parse `--replicas` values (`api=3`, `api=3,worker=2`, repeatable) into a map.
 *
 * @example
 * parseReplicas(['api=3,worker=2']); // { api: 3, worker: 2 }
 */
export function parseReplicas(values: string[]): Record<string, number> {
  const out: Record<string, number> = {};
  for (const v of values.flatMap((x) => x.split(','))) {
    const m = /^([a-z][a-z0-9-]*)=(\d+)$/.exec(v.trim());
    const n = m ? Number(m[2]) : Number.NaN;
    if (!m || !Number.isInteger(n) || n < 1 || n > 64) {
      throw usage(
        `shoal up: --replicas expects <service>=<n> with n from 1 to 64 (e.g. --replicas api=3), found ${JSON.stringify(v)}`,
        'up',
      );
    }
    out[m[1]!] = n;
  }
  return out;
}

function describeFleet(s: FleetStatus): string {
  const up = formatUptime(Date.now() - Date.parse(s.startedAt));
  const lines = [`fleet ${s.name} (pid ${s.pid}, up ${up}) - ${s.configFile}`];
  for (const r of s.resources) lines.push(`  ${r.name.padEnd(10)} ${r.url} (${r.source})`);
  for (const svc of s.services) lines.push(`  ${svc.name.padEnd(10)} ${svc.url}`);
  return lines.join('\n') + '\n\n';
}

/**
 * Run the CLI with the given arguments (without `node` and the script). Resolves with the exit code.
 *
 * @example
 * process.exitCode = await main(['ps', '--config', 'examples/orders']);
 */
export async function main(
  argv: string[],
  io: CliIo = { out: process.stdout, err: process.stderr, cwd: process.cwd() },
): Promise<number> {
  try {
    const [first, ...rest] = argv;
    if (first === undefined || first === '-h' || first === '--help') {
      (first === undefined ? io.err : io.out).write(HELP['main']!);
      return first === undefined ? 2 : 0;
    }
    if (first === '-v' || first === '--version') {
      io.out.write(version() + '\n');
      return 0;
    }
    if (first.startsWith('-')) {
      throw usage(`shoal: expected a command (${COMMANDS.join(', ')}) before options, found ${first}`);
    }
    if (!(COMMANDS as readonly string[]).includes(first)) {
      throw usage(`shoal: unknown command ${JSON.stringify(first)}; commands: ${COMMANDS.join(', ')}`);
    }
    const command = first as Command;
    if (rest.includes('--help') || rest.includes('-h')) {
      io.out.write(HELP[command === 'help' ? 'main' : command]!);
      return 0;
    }
    switch (command) {
      case 'help': {
        const topic = rest[0];
        if (topic !== undefined && !(topic in HELP)) {
          throw usage(
            `shoal help: unknown command ${JSON.stringify(topic)}; commands: ${COMMANDS.join(', ')}`,
          );
        }
        io.out.write(HELP[topic ?? 'main']!);
        return 0;
      }
      case 'up': {
        const { values, positionals } = parse('up', rest, {
          config: { type: 'string', short: 'c' },
          replicas: { type: 'string', short: 'r', multiple: true },
        });
        if (positionals.length > 0) {
          throw usage(
            `shoal up: unexpected argument ${JSON.stringify(positionals[0])} (did you mean --config ${positionals[0]}?)`,
            'up',
          );
        }
        const replicas = parseReplicas((values.replicas as string[] | undefined) ?? []);
        return await runUp({
          ...(values.config !== undefined ? { config: values.config as string } : {}),
          cwd: io.cwd,
          replicas,
          out: io.out as NodeJS.WritableStream & { isTTY?: boolean } as never,
        });
      }
      case 'restart': {
        const { values, positionals } = parse('restart', rest, { config: { type: 'string', short: 'c' } });
        if (positionals.length === 0)
          throw usage('shoal restart: missing <service> (e.g. shoal restart api)', 'restart');
        if (positionals.length > 1) {
          throw usage(
            `shoal restart: expected one service, found ${positionals.length}: ${positionals.join(' ')}`,
            'restart',
          );
        }
        const state = readStateFile(stateFilePath(values.config as string | undefined, io.cwd));
        const service = positionals[0]!;
        await requestRestart(state, service, (e) => {
          if (e.type === 'progress') io.out.write(`${e.message}\n`);
        });
        return 0;
      }
      case 'ps': {
        const { values, positionals } = parse('ps', rest, {
          config: { type: 'string', short: 'c' },
          json: { type: 'boolean' },
        });
        if (positionals.length > 0)
          throw usage(`shoal ps: unexpected argument ${JSON.stringify(positionals[0])}`, 'ps');
        const state = readStateFile(stateFilePath(values.config as string | undefined, io.cwd));
        const status = await requestStatus(state);
        if (values.json) io.out.write(JSON.stringify(status, null, 2) + '\n');
        else io.out.write(describeFleet(status) + renderTable(status.services.flatMap((s) => s.replicas)));
        return 0;
      }
    }
  } catch (err) {
    if (isShoalError(err)) {
      io.err.write(`${/^shoal[ :]/.test(err.message) ? '' : 'shoal: '}${err.message}\n`);
      return err.code === 'cli.usage' ? 2 : 1;
    }
    io.err.write(`shoal: unexpected error: ${(err as Error).stack ?? String(err)}\n`);
    return 1;
  }
}

function invokedDirectly(): boolean {
  const script = process.argv[1];
  if (!script) return false;
  try {
    return realpathSync(script) === realpathSync(fileURLToPath(import.meta.url));
  } catch {
    return pathToFileURL(script).href === import.meta.url;
  }
}

if (invokedDirectly()) {
  main(process.argv.slice(2)).then(
    (code) => {
      process.exitCode = code;
      // Something a replica or resource left open must not keep a finished command alive.
      setTimeout(() => process.exit(code), 1500).unref();
    },
    (err: unknown) => {
      process.stderr.write(`shoal: ${(err as Error).stack ?? String(err)}\n`);
      process.exitCode = 1;
    },
  );
}
