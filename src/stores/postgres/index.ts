export {
  createPool,
  type PgClient,
  type PgPool,
  type PoolSettings,
  poolSettingsFrom,
  withTransaction,
} from './pool.js';
