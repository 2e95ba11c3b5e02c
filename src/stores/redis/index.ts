export { type CreateRedisOptions, createRedis, type RedisClient, waitForRedis } from './client.js';
export { type LuaScript, loadLuaFile, luaScript, runScript } from './scripts.js';
export { parseRedisUrl, type RedisHost, type RedisTarget } from './url.js';
