import type { Queue } from 'bullmq';
import { queueNames, type QueueName } from './names.js';

/** Who serves each queue, and how to start one: what a waiting user is told when none is connected. */
export const queueServers: Record<QueueName, { who: string; start: string }> = {
  [queueNames.cam]: { who: 'cam-worker', start: '`camflow worker cam` (or `camflow dev`, or the compose file\'s cam-worker service)' },
  [queueNames.batch]: { who: 'finalizer', start: '`camflow worker cam` or `camflow worker finalizer`' },
  [queueNames.ingest]: { who: 'ingest worker', start: '`camflow worker cam` or `camflow worker ingest`' },
  [queueNames.train]: { who: 'trainer', start: '`camflow worker trainer` (or `camflow dev`, or the compose file\'s trainer service)' },
};

/**
 * How many workers are connected to a queue now (BullMQ names each worker's Redis connection after its queue;
 * `CLIENT LIST` finds them). `undefined` when the server does not say (a managed Redis that refuses `CLIENT LIST`):
 * unknown, never reported as none.
 */
export async function connectedWorkers(queue: Queue): Promise<number | undefined> {
  try {
    return await queue.getWorkersCount();
  } catch {
    return undefined;
  }
}

/**
 * Pure: the sentence for a queue with work waiting and no worker connected, or `undefined` when one is (or when
 * the count is unknown).
 * @example noWorkerText('train', 0, 'camflow') // "no trainer is connected to Redis queue 'train' (prefix camflow): …"
 */
export function noWorkerText(queue: QueueName, workers: number | undefined, prefix: string): string | undefined {
  if (workers !== 0) return undefined;
  const { who, start } = queueServers[queue];
  return `no ${who} is connected to Redis queue '${queue}' (prefix ${prefix}): the work waits until one starts: ${start}, with the same REDIS_URL and QUEUE_PREFIX`;
}
