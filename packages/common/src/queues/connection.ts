import { Redis, type RedisOptions } from 'ioredis';
import type { ConnectionOptions } from 'bullmq';
import type { Logger } from 'pino';
import { CamflowError } from '../errors.js';

/** ioredis options for BullMQ: workers need `maxRetriesPerRequest: null` to block and reconnect forever. */
export function redisOptions(url: string): RedisOptions {
  const u = new URL(url);
  const options: RedisOptions = {
    host: u.hostname.replace(/^\[(.*)\]$/, '$1'), // an IPv6 literal without its brackets
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

/**
 * Options for producers (queues, flows, the API's client): no offline queue, so a command issued while Redis is
 * down fails at once (the API answers 503) instead of waiting for a reconnect that may never come.
 */
export function producerConnection(url: string): ConnectionOptions {
  return { ...redisOptions(url), enableOfflineQueue: false } as ConnectionOptions;
}

export function createRedis(url: string): Redis {
  return new Redis(redisOptions(url));
}

/**
 * A connected producer client (no offline queue): resolves once the connection is ready, so its first command
 * cannot fail with "Stream isn't writeable"; later outages fail commands at once (and it reconnects by itself).
 */
export async function connectProducer(url: string): Promise<Redis> {
  const client = new Redis({ ...redisOptions(url), enableOfflineQueue: false, lazyConnect: true });
  client.on('error', () => undefined); // outages surface as failed commands, where they are handled
  await client.connect();
  return client;
}

/** A service camflow needs cannot be reached. The message names it (never its credentials). */
export class UnreachableError extends CamflowError {
  constructor(what: string, detail: string) {
    super('UNREACHABLE', `${what} is unreachable: ${detail}`);
  }
}

/** Is this error Redis being down (a producer without offline queue, or a closed connection)? */
export function isRedisDown(error: unknown): boolean {
  const message = (error as Error)?.message ?? '';
  return /enableOfflineQueue|Connection is closed|ECONNREFUSED|Stream isn't writeable|ETIMEDOUT|EHOSTUNREACH/i.test(message) && !(error instanceof CamflowError);
}

/**
 * Connect once and check the server, giving up after `timeoutMs`: commands fail fast with one line naming the
 * unreachable Redis instead of retrying forever.
 */
export async function probeRedis(url: string, timeoutMs = 5000, log?: Logger): Promise<Awaited<ReturnType<typeof checkRedis>>> {
  const where = safeRedisAddress(url);
  const client = new Redis({ ...redisOptions(url), lazyConnect: true, maxRetriesPerRequest: 0, enableOfflineQueue: false, connectTimeout: timeoutMs, retryStrategy: () => null });
  // The socket's own error (ECONNREFUSED, ENOTFOUND…) says more than ioredis's "Connection is closed." that follows.
  let socketError: string | undefined;
  client.on('error', (e: NodeJS.ErrnoException) => (socketError ??= notRedis(e) ?? e.code ?? e.message));
  let timer: NodeJS.Timeout | undefined;
  try {
    const timeout = new Promise<never>((_, reject) => {
      timer = setTimeout(() => reject(new UnreachableError(`Redis at ${where}`, socketError ?? `no answer within ${timeoutMs} ms`)), timeoutMs);
    });
    await Promise.race([client.connect(), timeout]);
    return await Promise.race([checkRedis(client, log), timeout]);
  } catch (error) {
    if (error instanceof CamflowError) throw error;
    const e = error as NodeJS.ErrnoException;
    throw new UnreachableError(`Redis at ${where}`, socketError ?? e.code ?? e.message);
  } finally {
    clearTimeout(timer);
    client.disconnect();
  }
}

/**
 * Pure: a server that answered, but not in Redis's protocol (an HTTP server, S3, the API's own port), said as such —
 * instead of ioredis's "Protocol error, got "H" as reply type byte. Please report this."
 */
export function notRedis(error: { message?: string }): string | undefined {
  const m = /Protocol error, got "(.*?)" as reply type byte/.exec(error.message ?? '');
  if (!m) return undefined;
  const looksHttp = m[1] === 'H';
  return `that port answers, but not as Redis (its reply began with ${JSON.stringify(m[1])}${looksHttp ? ': an HTTP server?' : ''}): check REDIS_URL`;
}

/** host:port of a Redis URL, without credentials. */
export function safeRedisAddress(url: string): string {
  try {
    const u = new URL(url);
    return `${u.protocol}//${u.hostname}:${u.port || 6379}`;
  } catch {
    return '[unparseable REDIS_URL]';
  }
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
export async function checkRedis(redis: Redis, log?: Logger): Promise<{ version: string; evictionPolicy: string; appendonly: string; problems: string[] }> {
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
  let appendonly = 'unknown';
  try {
    const reply = (await redis.config('GET', 'appendonly')) as string[];
    appendonly = reply[1] ?? 'unknown';
  } catch {
    // as above
  }
  const problems: string[] = [];
  if (evictionPolicy !== 'noeviction' && evictionPolicy !== 'unknown') {
    problems.push(`Redis maxmemory-policy is "${evictionPolicy}": jobs can be evicted and lost; set it to "noeviction"`);
  }
  if (appendonly === 'no') {
    problems.push('Redis persistence (AOF) is off: a Redis restart loses queued and running jobs; set "appendonly yes" (a batch whose jobs were lost is re-created from S3 by `camflow batches repair <id>`)');
  }
  for (const p of problems) log?.warn({ evictionPolicy, appendonly }, p);
  return { version, evictionPolicy, appendonly, problems };
}
