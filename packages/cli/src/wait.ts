import { Job, type Queue } from 'bullmq';
import { batchStatus, type BatchStatus } from '@camflow/ingest';
import { StorageError, imageResultSchema, isRedisDown, keys, parseJsonLines, type ImageResult, type ObjectStore } from '@camflow/common/core';
import type { Context } from './context.js';

/** Poll a batch until its summary exists. */
export async function waitForBatch(ctx: Context, batchId: string, timeoutMs = 30 * 60_000, onTick?: (s: BatchStatus) => void): Promise<BatchStatus> {
  const deadline = Date.now() + timeoutMs;
  let storageTroubleSince: number | undefined;
  for (;;) {
    let status: BatchStatus;
    try {
      status = await batchStatus(ctx.store, ctx.queues.batch, batchId);
      storageTroubleSince = undefined;
    } catch (error) {
      // A Redis restart while waiting is not the batch's failure: keep polling until the deadline. Nor is a passing
      // S3 error (a reset connection): polling goes on while they last less than a minute.
      const storage = error instanceof StorageError;
      if (storage) storageTroubleSince ??= Date.now();
      const bearable = isRedisDown(error) || (storage && Date.now() - storageTroubleSince! < 60_000);
      if (!bearable || Date.now() > deadline) throw error;
      await new Promise((r) => setTimeout(r, 500));
      continue;
    }
    onTick?.(status);
    if (status.state === 'completed') return status;
    if (Date.now() > deadline) throw new Error(`batch ${batchId} not complete after ${timeoutMs} ms (${status.chunks.done}/${status.chunks.total} chunks)`);
    await new Promise((r) => setTimeout(r, 250));
  }
}

export async function readResults(store: ObjectStore, batchId: string): Promise<ImageResult[]> {
  const key = keys.resultsJsonl(batchId);
  return parseJsonLines((await store.get(key)).toString('utf8'), imageResultSchema, key);
}

/**
 * Wait for a job by polling its state (no event can be missed, whenever the waiter starts), reporting each new
 * progress value. Rejects with the job's failure reason.
 */
export async function waitForJob<T>(queue: Queue, jobId: string, onProgress?: (p: unknown) => void, timeoutMs = 24 * 3600_000): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  let lastProgress = '';
  for (;;) {
    const job = await Job.fromId(queue, jobId);
    if (!job) throw new Error(`job ${jobId} not found in queue ${queue.name}`);
    const progress = JSON.stringify(job.progress);
    if (onProgress && progress !== lastProgress && typeof job.progress === 'object') onProgress(job.progress);
    lastProgress = progress;
    if (job.finishedOn) {
      if (job.failedReason && (await job.isFailed())) throw new Error(job.failedReason);
      return job.returnvalue as T;
    }
    if (Date.now() > deadline) throw new Error(`job ${jobId} not finished after ${timeoutMs} ms`);
    await new Promise((r) => setTimeout(r, 200));
  }
}
