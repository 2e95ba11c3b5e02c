export {
  loadMigrations,
  type MigrateOptions,
  type MigrateResult,
  type Migration,
  migrateToolkit,
  migrationChecksum,
  runMigrations,
} from './migrate.js';
export {
  createPool,
  type PgClient,
  type PgPool,
  type PoolSettings,
  poolSettingsFrom,
  withTransaction,
} from './pool.js';
