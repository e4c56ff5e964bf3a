import { Job, type FlowJob, type FlowProducer, type Queue } from 'bullmq';
import { assertSameQueuePrefix } from './status.js';
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
  listingPageJobId,
  listingPageSchema,
  totalsOf,
  type ListingPageJob,
  type Logger,
  type ObjectStore,
} from '@camflow/common/core';
import { enqueueBatch } from './enqueue.js';
import { listingJob } from './listing.js';

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
export async function repairBatch(deps: { store: ObjectStore; flow: FlowProducer; queues: { cam: Queue; batch: Queue; ingest?: Queue }; batchId: string; log?: Logger }): Promise<RepairReport> {
  const { store, batchId } = deps;
  const raw = await store.getJsonIfExists(keys.batchInfo(batchId));
  if (!raw) throw new NotFoundError('batch', batchId);
  const info = parseWith(batchInfoSchema, raw, 'batch info');
  const report = (action: RepairReport['action'], state: RepairReport['state'], committed: number, recreated: number[], failed: number[]): RepairReport => ({ batchId, action, state, committed, recreated, failed });
  if (await store.exists(keys.resultsSummary(batchId))) return report('none', 'completed', info.chunks, [], []);
  assertSameQueuePrefix(info, deps.queues.batch);

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
  // A listed batch whose listing has not ended: its next page's job must be live too.
  const listing = info.listing?.state === 'listing' ? info.listing : undefined;
  let nextPage: FlowJob | undefined;
  if (listing && deps.queues.ingest) {
    const pageJob = await Job.fromId(deps.queues.ingest, listingPageJobId(batchId, listing.pages));
    const pageState = pageJob ? await pageJob.getState() : 'missing';
    const marker = listing.pages === 0 ? undefined : parseWith(listingPageSchema, await store.getJson(keys.batchListingPage(batchId, listing.pages - 1)), 'listing page').last;
    const data: ListingPageJob = { batchId, page: listing.pages, ...(marker ? { marker } : {}), totals: totalsOf(info) };
    nextPage = listingJob(info, data);
    if (!LIVE.has(pageState)) {
      if (pageJob) await pageJob.remove().catch(() => undefined);
      missing.push(-1); // marks the page job as re-created
    }
  }
  const parent = await Job.fromId(deps.queues.batch, finalizeJobId(batchId));
  const parentState = parent ? await parent.getState() : 'missing';
  if (LIVE.has(parentState) && missing.length === 0) return report('none', 'running', committed.length, [], failed);

  // Re-create the flow: a new finalization whose children are every unfinished chunk. Existing live chunk jobs are
  // re-linked to it (same ids), missing ones are created from the manifest.
  if (parent) await parent.remove({ removeChildren: false });
  // The manifest, or while a listing goes on, the parts of the pages listed so far.
  const manifestKeys = listing ? Array.from({ length: listing.pages }, (_, p) => keys.batchManifestPart(batchId, p)) : [keys.batchManifest(batchId)];
  const accepted: AcceptedLine[] = [];
  for (const key of manifestKeys) {
    for (const l of parseJsonLines((await store.get(key)).toString('utf8'), manifestLineSchema, key)) if (acceptedLineSchema.safeParse(l).success) accepted.push(l as AcceptedLine);
  }
  const chunksMissing = missing.filter((c) => c >= 0);
  await enqueueBatch(deps.flow, info, accepted, new Set([...chunksMissing, ...live]), nextPage ? [nextPage] : []);
  deps.log?.info({ batchId, recreated: chunksMissing, relinked: live, failed, committed: committed.length, listingPage: nextPage ? listing?.pages : undefined }, 'batch repaired: jobs re-created');
  return report('requeued', 'requeued', committed.length, chunksMissing, failed);
}
