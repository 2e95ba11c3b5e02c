/**
 * The `shoal ps` table: one row per replica process (or empty slot), fixed column order.
 */
import type { ReplicaStatus } from './supervisor.js';

/** Column headers of the status table, in order. */
export const PS_COLUMNS = [
  'SERVICE',
  'REPLICA',
  'PID',
  'PORT',
  'STATE',
  'READY',
  'IN-FLIGHT',
  'REQUESTS',
  'RESTARTS',
  'UPTIME',
] as const;

/**
 * Human-readable duration: `42s`, `3m05s`, `2h04m`, `3d02h`.
 *
 * @example
 * formatUptime(185_000); // '3m05s'
 */
export function formatUptime(ms: number | undefined): string {
  if (ms === undefined) return '-';
  const s = Math.floor(ms / 1000);
  if (s < 60) return `${s}s`;
  const m = Math.floor(s / 60);
  if (m < 60) return `${m}m${String(s % 60).padStart(2, '0')}s`;
  const h = Math.floor(m / 60);
  if (h < 24) return `${h}h${String(m % 60).padStart(2, '0')}m`;
  return `${Math.floor(h / 24)}d${String(h % 24).padStart(2, '0')}h`;
}

/**
 * Render status rows as an aligned text table.
 *
 * @example
 * process.stdout.write(renderTable(fleet.status().replicas));
 */
export function renderTable(rows: readonly ReplicaStatus[]): string {
  const cells: string[][] = [
    [...PS_COLUMNS],
    ...rows.map((r) => [
      r.service,
      String(r.replica),
      r.pid === undefined ? '-' : String(r.pid),
      r.port === undefined ? '-' : String(r.port),
      r.state,
      r.ready ? 'yes' : 'no',
      String(r.inFlight),
      String(r.requests),
      String(r.restarts),
      formatUptime(r.uptimeMs),
    ]),
  ];
  const widths = PS_COLUMNS.map((_, i) => Math.max(...cells.map((row) => row[i]!.length)));
  return (
    cells
      .map((row) =>
        row
          .map((c, i) => c.padEnd(widths[i]!))
          .join('  ')
          .trimEnd(),
      )
      .join('\n') + '\n'
  );
}
