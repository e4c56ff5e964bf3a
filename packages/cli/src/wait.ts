import { Job, type Queue } from 'bullmq';
import { batchStatus, type BatchStatus } from '@camflow/ingest';
import { StorageError, connectedWorkers, imageResultSchema, isRedisDown, keys, noWorkerText, parseJsonLines, type ImageResult, type ObjectStore, type QueueName } from '@camflow/common/core';
import type { Context } from './context.js';

/** How long a waiter gives workers to connect before it says none has, and how often it counts them again. */
const WORKER_GRACE_MS = 2000;
const WORKER_RECOUNT_MS = 5000;

/** Whether a waiter should count workers now: from two seconds in, every five. */
function workerCountDue(): () => boolean {
  const started = Date.now();
  let counted = 0;
  return () => {
    const now = Date.now();
    if (now - started < WORKER_GRACE_MS || now - counted < WORKER_RECOUNT_MS) return false;
    counted = now;
    return true;
  };
}

/**
 * Poll a batch until its summary exists. From two seconds in, every five, it also counts the workers connected to the
 * queue the batch waits in: when there are none, `onWaiting` gets the sentence saying so (each distinct one once;
 * by default written to stderr) — a batch with no worker would otherwise wait in silence.
 */
export async function waitForBatch(ctx: Context, batchId: string, timeoutMs = 30 * 60_000, onTick?: (s: BatchStatus) => void, onWaiting: (text: string) => void = warnOnce()): Promise<BatchStatus> {
  const deadline = Date.now() + timeoutMs;
  const countDue = workerCountDue();
  let storageTroubleSince: number | undefined;
  for (;;) {
    let status: BatchStatus;
    try {
      status = await batchStatus(ctx.store, ctx.queues.batch, batchId, countDue() ? ctx.queues : undefined);
      if (status.waiting) onWaiting(status.waiting);
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

/** A writer to stderr that writes each distinct line once (with a line break first when a progress bar may be on it). */
export function warnOnce(): (text: string) => void {
  const said = new Set<string>();
  return (text) => {
    if (said.has(text)) return;
    said.add(text);
    process.stderr.write(`${process.stderr.isTTY ? '\n' : ''}camflow: ${text}\n`);
  };
}

/**
 * Wait for a job by polling its state (no event can be missed, whenever the waiter starts), reporting each new
 * progress value. Rejects with the job's failure reason. A job still waiting after two seconds with no worker
 * connected to its queue is reported to `onWaiting` (as `waitForBatch` does).
 */
export async function waitForJob<T>(queue: Queue, jobId: string, onProgress?: (p: unknown) => void, timeoutMs = 24 * 3600_000, onWaiting: (text: string) => void = warnOnce()): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  const countDue = workerCountDue();
  let lastProgress = '';
  for (;;) {
    const job = await Job.fromId(queue, jobId);
    if (!job) throw new Error(`job ${jobId} not found in queue ${queue.name}`);
    if (!job.finishedOn && countDue()) {
      if ((await job.getState()) !== 'active') {
        const text = noWorkerText(queue.name as QueueName, await connectedWorkers(queue), queue.opts.prefix ?? 'bull');
        if (text) onWaiting(text);
      }
    }
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

/** Work that runs elsewhere while a command waits for it: what it is, where it runs, how to follow and stop it. */
export interface WaitedWork {
  /** e.g. "training job 7", "batch b2026…". */
  what: string;
  /** e.g. "the trainer", "the cam-workers". */
  where: string;
  /** The command that follows it again. */
  follow: string;
  /** The command that stops it. */
  stop: string;
}

/**
 * While a command waits for work that runs elsewhere (a batch, a training job), Ctrl-C ends the wait, not the work:
 * a line saying so — with the work's id and how to follow or stop it — is written to stderr at once (a script's log
 * has the id even if the wait is killed), and on Ctrl-C a line saying the work goes on; the process then exits 130.
 * Returns the function that removes the handler.
 */
export function interruptibleWait(work: WaitedWork): () => void {
  const how = `\`${work.follow}\` follows it, \`${work.stop}\` stops it`;
  const onInterrupt = () => {
    process.stderr.write(`${process.stderr.isTTY ? '\n' : ''}camflow: stopped waiting; ${work.what} goes on in ${work.where}: ${how}\n`);
    process.exit(130);
  };
  // The handler first: a Ctrl-C the moment the line appears must not meet the default action (killed, nothing said).
  process.once('SIGINT', onInterrupt);
  process.stderr.write(`camflow: waiting for ${work.what} in ${work.where}; Ctrl-C ends the wait, not the work: ${how}\n`);
  return () => process.off('SIGINT', onInterrupt);
}
