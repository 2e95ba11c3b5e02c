export { createRedis, waitForRedis, type CreateRedisOptions, type RedisClient } from './client.js';
export { loadLuaFile, luaScript, runScript, type LuaScript } from './scripts.js';
export { parseRedisUrl, type RedisHost, type RedisTarget } from './url.js';
