import type { Queue } from 'bullmq';
import { keys, type ObjectStore } from '@camflow/common';
import type { BatchInfo } from './submit.js';

export interface BatchStatus {
  batchId: string;
  state: 'completed' | 'running' | 'unknown';
  info?: BatchInfo;
  chunks: { total: number; done: number };
  summary?: unknown;
}

/** Status of a batch from its stored objects (the source of truth) and its parent job's pending children. */
export async function batchStatus(store: ObjectStore, batchQueue: Queue, batchId: string): Promise<BatchStatus> {
  const info = await store.getJsonIfExists<BatchInfo>(keys.batchInfo(batchId));
  if (!info) return { batchId, state: 'unknown', chunks: { total: 0, done: 0 } };
  const summary = await store.getJsonIfExists(keys.resultsSummary(batchId));
  if (summary) return { batchId, state: 'completed', info, chunks: { total: info.chunks, done: info.chunks }, summary };
  let pending = info.chunks;
  const job = await batchQueue.getJob(batchId);
  if (job) {
    const counts = await job.getDependenciesCount({ unprocessed: true });
    pending = counts.unprocessed ?? pending;
  }
  return { batchId, state: 'running', info, chunks: { total: info.chunks, done: info.chunks - pending } };
}
