import type { Queue } from 'bullmq';
import { NotFoundError, batchCancelSchema, keys, parseWith, type ObjectStore } from '@camflow/common/core';
import { batchProgress } from './status.js';

export interface CancelReport {
  batchId: string;
  /** `cancelled`: the marker was written now; `none`: it was already there, or the batch had finished. */
  action: 'cancelled' | 'none';
  state: string;
  cancelledAt?: string;
}

/**
 * Cancel a batch. The cancellation is an object in S3 (the truth, whatever happens to Redis): chunks that are not
 * committed yet then give each of their items a `cancelled` line without loading a model or a pixel, running chunks
 * finish as they are, and the finalization runs as always, so every submitted entry still gets exactly one line.
 * Idempotent.
 */
export async function cancelBatch(store: ObjectStore, batchQueue: Queue, batchId: string, reason = 'cancelled by the operator'): Promise<CancelReport> {
  // A marker in the object store, read by whichever workers run the batch: it works from any QUEUE_PREFIX.
  const status = await batchProgress(store, batchQueue, batchId);
  if (status.state === 'unknown') throw new NotFoundError('batch', batchId);
  const existing = await store.getJsonIfExists(keys.batchCancel(batchId));
  if (existing) return { batchId, action: 'none', state: status.state, cancelledAt: parseWith(batchCancelSchema, existing, 'batch cancellation').cancelledAt };
  if (status.state === 'completed') return { batchId, action: 'none', state: 'completed' };
  const record = { batchId, cancelledAt: new Date().toISOString(), reason };
  await store.putJson(keys.batchCancel(batchId), record);
  return { batchId, action: 'cancelled', state: status.state, cancelledAt: record.cancelledAt };
}
