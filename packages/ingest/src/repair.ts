import { Job, type FlowProducer, type Queue } from 'bullmq';
import {
  NotFoundError,
  acceptedLineSchema,
  batchInfoSchema,
  chunkJobId,
  finalizeJobId,
  keys,
  manifestLineSchema,
  parseJsonLines,
  parseWith,
  type AcceptedLine,
  type Logger,
  type ObjectStore,
} from '@camflow/common';
import { enqueueBatch } from './enqueue.js';

export interface RepairReport {
  batchId: string;
  /** `none`: nothing to repair (completed, or its jobs are all in place); `requeued`: jobs re-created. */
  action: 'none' | 'requeued';
  state: 'completed' | 'running' | 'requeued';
  /** Chunks whose results are committed in S3. */
  committed: number;
  /** Chunks whose jobs were missing and are re-created. */
  recreated: number[];
  /** Chunks that exhausted their attempts (reported as failed items, not retried). */
  failed: number[];
}

const LIVE = new Set(['waiting', 'active', 'delayed', 'prioritized', 'waiting-children', 'wait']);

/**
 * Bring a batch to completion from its S3 state, which is the truth: chunks whose results are committed are done;
 * chunks whose jobs are missing (a Redis restart without persistence, an interrupted submission) are re-created
 * from the batch manifest; a failed or missing finalization runs again. Idempotent: a batch whose jobs are all in
 * place is left alone, and re-created jobs have the same deterministic ids.
 * @example await repairBatch({ store, flow, queues, batchId })
 */
export async function repairBatch(deps: { store: ObjectStore; flow: FlowProducer; queues: { cam: Queue; batch: Queue }; batchId: string; log?: Logger }): Promise<RepairReport> {
  const { store, batchId } = deps;
  const raw = await store.getJsonIfExists(keys.batchInfo(batchId));
  if (!raw) throw new NotFoundError('batch', batchId);
  const info = parseWith(batchInfoSchema, raw, 'batch info');
  const report = (action: RepairReport['action'], state: RepairReport['state'], committed: number, recreated: number[], failed: number[]): RepairReport => ({ batchId, action, state, committed, recreated, failed });
  if (await store.exists(keys.resultsSummary(batchId))) return report('none', 'completed', info.chunks, [], []);

  const committed: number[] = [];
  const failed: number[] = [];
  const missing: number[] = [];
  const live: number[] = [];
  for (let c = 0; c < info.chunks; c++) {
    if (await store.exists(keys.resultChunk(batchId, c))) committed.push(c);
    else if (await store.exists(keys.resultChunkFailure(batchId, c))) failed.push(c);
    else {
      const job = await Job.fromId(deps.queues.cam, chunkJobId(batchId, c));
      const state = job ? await job.getState() : 'missing';
      if (state === 'failed') failed.push(c);
      else if (LIVE.has(state)) live.push(c);
      else missing.push(c); // missing, or completed without its committed results (removed objects)
    }
  }
  const parent = await Job.fromId(deps.queues.batch, finalizeJobId(batchId));
  const parentState = parent ? await parent.getState() : 'missing';
  if (LIVE.has(parentState) && missing.length === 0) return report('none', 'running', committed.length, [], failed);

  // Re-create the flow: a new finalization whose children are every unfinished chunk. Existing live chunk jobs are
  // re-linked to it (same ids), missing ones are created from the manifest.
  if (parent) await parent.remove({ removeChildren: false });
  const lines = parseJsonLines((await store.get(keys.batchManifest(batchId))).toString('utf8'), manifestLineSchema, keys.batchManifest(batchId));
  const accepted = lines.filter((l): l is AcceptedLine => acceptedLineSchema.safeParse(l).success);
  await enqueueBatch(deps.flow, info, accepted, new Set([...missing, ...live]));
  deps.log?.info({ batchId, recreated: missing, relinked: live, failed, committed: committed.length }, 'batch repaired: jobs re-created');
  return report('requeued', 'requeued', committed.length, missing, failed);
}
