/**
 * Finding and loading `shoal.config.{ts,mts,js,mjs,json}`. TypeScript configs are loaded through
 * tsx's programmatic API so the compiled CLI needs no loader flags.
 */
import { existsSync, readFileSync, statSync } from 'node:fs';
import { basename, dirname, join, relative, resolve } from 'node:path';
import { pathToFileURL } from 'node:url';
import { ShoalError } from '../errors.js';
import { type FleetModel, validateFleet } from './model.js';

/** File names searched, in order, when no `--config` is given. */
export const CONFIG_FILE_NAMES = [
  'shoal.config.ts',
  'shoal.config.mts',
  'shoal.config.js',
  'shoal.config.mjs',
  'shoal.config.json',
] as const;

/** A loaded, validated config and where it came from. */
export interface LoadedConfig {
  /** Absolute path of the config file. */
  file: string;
  /** The directory relative paths (cwd, state) are resolved against. */
  dir: string;
  model: FleetModel;
}

/**
 * Locate the config: an explicit path (file or directory) or the first known file name in `cwd`.
 * Throws `fleet.config_invalid` naming what was looked for.
 *
 * @example
 * const file = findConfigFile(undefined, process.cwd());
 */
export function findConfigFile(explicit: string | undefined, cwd: string): string {
  if (explicit !== undefined) {
    const p = resolve(cwd, explicit);
    if (!existsSync(p)) {
      throw new ShoalError('fleet.config_invalid', `Config file not found: ${p} (from --config ${explicit})`);
    }
    if (statSync(p).isDirectory()) return findConfigFile(undefined, p);
    return p;
  }
  for (const name of CONFIG_FILE_NAMES) {
    const p = join(cwd, name);
    if (existsSync(p)) return p;
  }
  throw new ShoalError(
    'fleet.config_invalid',
    `No fleet config in ${cwd}: looked for ${CONFIG_FILE_NAMES.join(', ')}. Pass --config <path> or create shoal.config.ts.`,
  );
}

function display(file: string, cwd: string): string {
  const rel = relative(cwd, file);
  return rel.startsWith('..') || rel === '' ? file : rel;
}

async function importModule(file: string): Promise<Record<string, unknown>> {
  if (/\.(c|m)?ts$/.test(file)) {
    let api: typeof import('tsx/esm/api');
    try {
      api = await import('tsx/esm/api');
    } catch (err) {
      throw new ShoalError(
        'fleet.config_invalid',
        `Cannot load ${file}: loading a TypeScript config needs the "tsx" package (npm i tsx), or use shoal.config.js`,
        { cause: err },
      );
    }
    return (await api.tsImport(pathToFileURL(file).href, import.meta.url)) as Record<string, unknown>;
  }
  return (await import(pathToFileURL(file).href)) as Record<string, unknown>;
}

/**
 * Load and validate a fleet config file. Syntax errors, a missing default export and schema
 * problems all become one `fleet.config_invalid` error naming the file.
 *
 * @example
 * const { model, dir } = await loadFleetConfig('examples/orders/shoal.config.ts');
 */
export async function loadFleetConfig(path: string | undefined, cwd = process.cwd()): Promise<LoadedConfig> {
  const file = findConfigFile(path, cwd);
  const shown = display(file, cwd);
  let raw: unknown;
  if (file.endsWith('.json')) {
    const text = readFileSync(file, 'utf8');
    try {
      raw = JSON.parse(text);
    } catch (err) {
      throw new ShoalError('fleet.config_invalid', `${shown}: not valid JSON (${(err as Error).message})`, {
        cause: err,
      });
    }
  } else {
    let mod: Record<string, unknown>;
    try {
      mod = await importModule(file);
    } catch (err) {
      if (err instanceof ShoalError) throw err;
      throw new ShoalError('fleet.config_invalid', `${shown}: failed to load (${(err as Error).message})`, {
        cause: err,
      });
    }
    // tsx may wrap a CommonJS-shaped module as { default: { default: ... } }.
    let def = mod['default'] ?? mod['fleet'];
    if (def && typeof def === 'object' && 'default' in def && !('services' in def)) {
      def = (def as Record<string, unknown>)['default'];
    }
    if (def === undefined) {
      throw new ShoalError(
        'fleet.config_invalid',
        `${shown}: expected a default export (export default defineFleet({...})), found exports: ${
          Object.keys(mod).join(', ') || 'none'
        }`,
      );
    }
    raw = def;
  }
  const model = validateFleet(raw, shown);
  if (model.name === undefined) model.name = basename(dirname(file));
  return { file, dir: dirname(file), model };
}
