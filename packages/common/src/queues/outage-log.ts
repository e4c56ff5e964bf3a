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

/**
 * What a process says about its Redis connections: `error` for each error event of a client, `ready` for each
 * (re)connection of one (`client`: which one, any value that tells them apart).
 */
export interface OutageLog {
  error(error: unknown, context?: Record<string, unknown>, client?: unknown): void;
  ready(client?: unknown): void;
}

/**
 * One line when Redis stops answering and one when every client that lost it is connected again, for a whole
 * process, instead of one per retry of each client (a cam worker wrote 72 error records with stacks, and its ioredis
 * clients 8 "Unhandled error event" blocks, in an 18 s outage, and never said it had recovered). Errors that are not
 * about the connection are logged each time, as before.
 */
export function redisOutageLog(log: Logger, now: () => number = Date.now): OutageLog {
  let since: number | undefined;
  let repeats = 0;
  const down = new Set<unknown>();
  return {
    error(error, context = {}, client) {
      // A job finished here after its lock had expired (Redis away, or the event loop blocked, longer than
      // JOB_LOCK_MS): BullMQ has handed it to another worker, which runs it again — camflow's writes are idempotent.
      const lost = /^Missing lock for job (\S+?)\.? /.exec(errorMessage(error));
      if (lost) {
        log.warn({ ...context, jobId: lost[1] }, `job ${lost[1]} finished here after its lock had expired (Redis away or this process blocked longer than JOB_LOCK_MS): another worker runs it again; its results are written idempotently`);
        return;
      }
      if (!isConnectionError(error)) {
        log.error({ ...context, err: error }, 'worker error');
        return;
      }
      down.add(client);
      if (since !== undefined) {
        repeats++;
        return;
      }
      since = now();
      log.error({ ...context, err: errorMessage(error) }, `Redis stopped answering (${errorMessage(error)}): jobs wait; every connection is retried until it answers`);
    },
    ready(client) {
      if (!down.delete(client) || down.size > 0 || since === undefined) return;
      const seconds = Math.round((now() - since) / 100) / 10;
      log.warn({ downSeconds: seconds, repeatedErrors: repeats }, `Redis answers again after ${seconds} s: work goes on`);
      since = undefined;
      repeats = 0;
    },
  };
}

/** A BullMQ worker, queue or flow producer: errors on the object, every (re)connection on its backend. */
interface BullObject {
  on(event: 'error', listener: (error: Error) => void): unknown;
  getBackend(): { on(event: 'ready', listener: () => void): unknown };
}

/**
 * Route a BullMQ object's connection errors and reconnections to the process's outage log. (A Worker emits its own
 * 'ready' once, at start; its backend repeats each connection's.)
 */
export function watchBull(outage: OutageLog, target: BullObject, context: Record<string, unknown> = {}): void {
  target.on('error', (error) => outage.error(error, context, target));
  target.getBackend().on('ready', () => outage.ready(target));
}

/**
 * The same for a plain ioredis client (a subscriber, a publisher) — and so never a client without an `error`
 * listener, which prints "[ioredis] Unhandled error event" blocks outside the JSON logs.
 */
export function watchRedisClient(outage: OutageLog, client: { on(event: 'error' | 'ready', listener: (error?: Error) => void): unknown }, context: Record<string, unknown> = {}): void {
  client.on('error', (error) => outage.error(error, context, client));
  client.on('ready', () => outage.ready(client));
}
