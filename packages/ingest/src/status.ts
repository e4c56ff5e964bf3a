import { Job, type Queue } from 'bullmq';
import { batchInfoSchema, batchSummarySchema, finalizeJobId, keys, parseWith, publicReason, type BatchInfo, type BatchSummary, type ObjectStore } from '@camflow/common';

/**
 * - `running`: its jobs are queued or running.
 * - `completed`: `results.jsonl` and `summary.json` are written.
 * - `failed`: finalization exhausted its attempts (`reason` says why); `repair` runs it again.
 * - `stalled`: batch.json exists but its jobs are not in Redis (a Redis restart without persistence, an
 *   interrupted submission); `repair` re-creates them from the manifest.
 * - `unknown`: no such batch.
 */
export type BatchState = 'completed' | 'running' | 'failed' | 'stalled' | 'unknown';

export interface BatchStatus {
  batchId: string;
  state: BatchState;
  info?: BatchInfo;
  chunks: { total: number; done: number };
  summary?: BatchSummary;
  /** Why a batch is failed or stalled, and what to do. */
  reason?: string;
}

/** Status of a batch from its stored objects (the source of truth) and its finalization job. */
export async function batchStatus(store: ObjectStore, batchQueue: Queue, batchId: string): Promise<BatchStatus> {
  const raw = await store.getJsonIfExists(keys.batchInfo(batchId));
  if (!raw) return { batchId, state: 'unknown', chunks: { total: 0, done: 0 } };
  const info = parseWith(batchInfoSchema, raw, 'batch info');
  const summary = await store.getJsonIfExists(keys.resultsSummary(batchId));
  if (summary) return { batchId, state: 'completed', info, chunks: { total: info.chunks, done: info.chunks }, summary: parseWith(batchSummarySchema, summary, 'batch summary') };
  const job = await Job.fromId(batchQueue, finalizeJobId(batchId));
  const repair = `run \`camflow batches repair ${batchId}\` (HTTP: POST /v1/batches/${batchId}/repair)`;
  if (!job) {
    return { batchId, state: 'stalled', info, chunks: { total: info.chunks, done: 0 }, reason: `its jobs are not in Redis (lost in a Redis restart without persistence, or the submission was interrupted): ${repair}` };
  }
  const counts = await job.getDependenciesCount({ unprocessed: true });
  const done = info.chunks - Math.min(info.chunks, counts.unprocessed ?? info.chunks);
  if (await job.isFailed()) {
    // Read the job again now that its state is final: the copy read above may predate its last attempt (it was
    // between attempts then), and would report one attempt too few and an earlier reason (seen in a CI run).
    const final = (await Job.fromId(batchQueue, finalizeJobId(batchId))) ?? job;
    return { batchId, state: 'failed', info, chunks: { total: info.chunks, done }, reason: `finalization failed after ${final.attemptsMade} attempts: ${publicReason(new Error(final.failedReason))}; ${repair}` };
  }
  return { batchId, state: 'running', info, chunks: { total: info.chunks, done } };
}
