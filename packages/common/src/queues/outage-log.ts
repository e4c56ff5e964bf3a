import type { Logger } from 'pino';
import { errorMessage } from '../errors.js';

const CONNECTION_CODES = new Set(['ECONNREFUSED', 'ECONNRESET', 'ETIMEDOUT', 'EPIPE', 'ENOTFOUND', 'EAI_AGAIN', 'EHOSTUNREACH', 'ENETUNREACH']);

/**
 * Pure: whether an error is a lost or refused Redis connection (ioredis reconnects by itself), not a failed command.
 * @example isConnectionError(Object.assign(new Error('connect ECONNREFUSED 127.0.0.1:6379'), { code: 'ECONNREFUSED' })) // true
 */
export function isConnectionError(error: unknown): boolean {
  const e = error as { code?: unknown; message?: unknown } | undefined;
  if (typeof e?.code === 'string' && CONNECTION_CODES.has(e.code)) return true;
  return typeof e?.message === 'string' && /Connection is closed|Stream isn't writeable|connect (ECONNREFUSED|ETIMEDOUT)|read ECONNRESET|write EPIPE/.test(e.message);
}

/** What a process says about its Redis connections: `error` for each error event, `ready` for each (re)connection. */
export interface OutageLog {
  error(error: unknown, context?: Record<string, unknown>): void;
  ready(): void;
}

/**
 * One line when Redis stops answering and one when it answers again, for a whole process, instead of one per retry
 * of each client (a cam worker wrote 72 error records with stacks, and its ioredis clients 8 "Unhandled error event"
 * blocks, in an 18 s outage, and never said it had recovered). Errors that are not about the connection are logged
 * each time, as before.
 */
export function redisOutageLog(log: Logger, now: () => number = Date.now): OutageLog {
  let since: number | undefined;
  let repeats = 0;
  return {
    error(error, context = {}) {
      if (!isConnectionError(error)) {
        log.error({ ...context, err: error }, 'worker error');
        return;
      }
      if (since !== undefined) {
        repeats++;
        return;
      }
      since = now();
      log.error({ ...context, err: errorMessage(error) }, `Redis stopped answering (${errorMessage(error)}): jobs wait; every connection is retried until it answers`);
    },
    ready() {
      if (since === undefined) return;
      const seconds = Math.round((now() - since) / 100) / 10;
      log.warn({ downSeconds: seconds, repeatedErrors: repeats }, `Redis answers again after ${seconds} s: work goes on`);
      since = undefined;
      repeats = 0;
    },
  };
}

/** A BullMQ worker or queue (its Redis client behind a promise) or an ioredis client: what `watchRedis` listens to. */
type RedisUser = { on(event: 'error', listener: (error: Error) => void): unknown; client?: Promise<{ on(event: 'ready', listener: () => void): unknown }> } | { on(event: 'error' | 'ready', listener: (error?: Error) => void): unknown };

/**
 * Route a client's connection errors and reconnections to the process's outage log (and so never leave an ioredis
 * client without an `error` listener, which prints "[ioredis] Unhandled error event" blocks outside the JSON logs).
 */
export function watchRedis(outage: OutageLog, target: RedisUser, context: Record<string, unknown> = {}): void {
  (target as { on(event: 'error', listener: (error: Error) => void): unknown }).on('error', (error) => outage.error(error, context));
  const client = (target as { client?: unknown }).client;
  if (client instanceof Promise) {
    (client as Promise<{ on(event: 'ready', listener: () => void): unknown }>).then((c) => c.on('ready', () => outage.ready())).catch(() => undefined);
  } else (target as { on(event: 'ready', listener: () => void): unknown }).on('ready', () => outage.ready());
}
