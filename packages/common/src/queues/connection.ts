import { Redis, type RedisOptions } from 'ioredis';
import type { ConnectionOptions } from 'bullmq';
import type { Logger } from 'pino';
import { CamflowError } from '../errors.js';

/** ioredis options for BullMQ: workers need `maxRetriesPerRequest: null` to block and reconnect forever. */
export function redisOptions(url: string): RedisOptions {
  const u = new URL(url);
  const options: RedisOptions = {
    host: u.hostname,
    port: Number(u.port || 6379),
    maxRetriesPerRequest: null,
    enableReadyCheck: true,
    // Reconnect with a capped backoff: a restarted Redis is picked up without a restart of ours.
    retryStrategy: (times) => Math.min(100 * 2 ** Math.min(times, 6), 3000),
  };
  if (u.username) options.username = decodeURIComponent(u.username);
  if (u.password) options.password = decodeURIComponent(u.password);
  if (u.pathname.length > 1) options.db = Number(u.pathname.slice(1));
  if (u.protocol === 'rediss:') options.tls = {};
  return options;
}

/** The same options typed for BullMQ's Queue, Worker and FlowProducer. */
export function bullConnection(url: string): ConnectionOptions {
  return redisOptions(url) as ConnectionOptions;
}

export function createRedis(url: string): Redis {
  return new Redis(redisOptions(url));
}

export class RedisConfigError extends CamflowError {
  constructor(message: string) {
    super('REDIS_CONFIG', message);
  }
}

/**
 * Start-up check: BullMQ needs Redis ≥ 6.2, and any eviction policy but `noeviction` can silently drop jobs.
 * Returns the findings; a too-old server throws, a wrong policy is logged as an error (and returned).
 */
export async function checkRedis(redis: Redis, log?: Logger): Promise<{ version: string; evictionPolicy: string; problems: string[] }> {
  const info = await redis.info('server');
  const version = /redis_version:(\S+)/.exec(info)?.[1] ?? '0.0.0';
  const [major = 0, minor = 0] = version.split('.').map(Number);
  if (major < 6 || (major === 6 && minor < 2)) {
    throw new RedisConfigError(`Redis ${version} is too old: BullMQ needs 6.2 or newer`);
  }
  let evictionPolicy = 'unknown';
  try {
    const reply = (await redis.config('GET', 'maxmemory-policy')) as string[];
    evictionPolicy = reply[1] ?? 'unknown';
  } catch {
    // Managed Redis services may forbid CONFIG; nothing to check then.
  }
  const problems: string[] = [];
  if (evictionPolicy !== 'noeviction' && evictionPolicy !== 'unknown') {
    problems.push(`Redis maxmemory-policy is "${evictionPolicy}": jobs can be evicted and lost; set it to "noeviction"`);
  }
  for (const p of problems) log?.error({ evictionPolicy }, p);
  return { version, evictionPolicy, problems };
}
