import type { Job, QueueEvents } from 'bullmq';
import { batchStatus, type BatchStatus } from '@camflow/ingest';
import { keys, type ObjectStore } from '@camflow/common';
import type { ImageResult } from '@camflow/cam-worker';
import type { Context } from './context.js';

/** Poll a batch until its summary exists. */
export async function waitForBatch(ctx: Context, batchId: string, timeoutMs = 30 * 60_000, onTick?: (s: BatchStatus) => void): Promise<BatchStatus> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const status = await batchStatus(ctx.store, ctx.queues.batch, batchId);
    onTick?.(status);
    if (status.state === 'completed') return status;
    if (Date.now() > deadline) throw new Error(`batch ${batchId} not complete after ${timeoutMs} ms (${status.chunks.done}/${status.chunks.total} chunks)`);
    await new Promise((r) => setTimeout(r, 250));
  }
}

export async function readResults(store: ObjectStore, batchId: string): Promise<ImageResult[]> {
  const text = (await store.get(keys.resultsJsonl(batchId))).toString('utf8');
  return text
    .split('\n')
    .filter((l) => l.trim())
    .map((l) => JSON.parse(l) as ImageResult);
}

/** Wait for a training job, reporting its per-epoch progress. */
export async function followTraining<T>(job: Job, events: QueueEvents, onProgress: (p: unknown) => void): Promise<T> {
  const listener = ({ jobId, data }: { jobId: string; data: unknown }) => {
    if (jobId === job.id) onProgress(data);
  };
  events.on('progress', listener);
  try {
    return (await job.waitUntilFinished(events)) as T;
  } finally {
    events.off('progress', listener);
  }
}
