export { createPool, poolSettingsFrom, withTransaction, type PgClient, type PgPool, type PoolSettings } from './pool.js';
