import { UnrecoverableError, type FlowJob, type FlowProducer, type Job } from 'bullmq';
import {
  batchInfoSchema,
  finalizeJobId,
  finishListing,
  isRefused,
  keys,
  listingPageJobId,
  listingPageJobSchema,
  listingPageSchema,
  parseWith,
  queueNames,
  toJsonLines,
  getModelManifest,
  type AcceptedLine,
  type BatchInfo,
  type ListingPage,
  type ListingPageJob,
  type ListingTotals,
  type Logger,
  type ObjectStore,
} from '@camflow/common/core';
import { chunkJobs, enqueueBatch } from './enqueue.js';
import { ingestEntries } from './ingest-entries.js';
import { SourceError, fromArray, listS3Page, openS3Prefix, s3ObjectEntries, type S3SourceOptions, type SourceLimits } from './sources.js';

/** Keys per listing page (S3 lists at most 1,000 per request). */
export const DEFAULT_LISTING_PAGE = 1000;

/** The finalization job of a batch, as BullMQ names a parent: every job of a listed batch is one of its children. */
const parentOf = (prefix: string, batchId: string) => ({ id: finalizeJobId(batchId), queue: `${prefix}:${queueNames.batch}` });

/** The ingest job of one listing page: retried like a chunk (stalls included); a page that fails for good ends the listing. */
export function listingJob(info: Pick<BatchInfo, 'batchId' | 'attempts' | 'backoffMs'>, data: ListingPageJob): FlowJob {
  return {
    name: 'list',
    queueName: queueNames.ingest,
    data,
    opts: {
      jobId: listingPageJobId(info.batchId, data.page),
      attempts: info.attempts,
      backoff: { type: 'exponential', delay: info.backoffMs },
      ignoreDependencyOnFailure: true,
      removeOnComplete: { age: 24 * 3600, count: 10_000 },
      removeOnFail: { age: 7 * 24 * 3600 },
    },
  };
}

/**
 * Enqueue a listed batch: its finalization, with one child, the first page's ingest job. Each page job adds its
 * chunks and the next page's job as children of the same finalization before it completes, so the finalization runs
 * only when every page is listed and every chunk is done.
 */
export async function enqueueListing(flow: FlowProducer, info: BatchInfo, first: ListingPageJob): Promise<void> {
  await enqueueBatch(flow, info, [], undefined, [listingJob(info, first)]);
}

export interface ListingDeps {
  store: ObjectStore;
  flow: FlowProducer;
  /** BullMQ's key prefix (QUEUE_PREFIX): parents are named with it. */
  prefix: string;
  /** Where `s3://` sources are read from: the ingest worker's own SOURCE_S3_* configuration (no secret travels in a job). */
  s3Source: S3SourceOptions;
  limits: SourceLimits;
  maxPixels: number;
  maxSlidePixels: number;
  maxFieldPixels: number;
  log: Logger;
}

const add = (a: ListingTotals, b: ListingTotals): ListingTotals => ({
  items: a.items + b.items,
  accepted: a.accepted + b.accepted,
  rejected: a.rejected + b.rejected,
  uniqueImages: a.uniqueImages + b.uniqueImages,
  chunks: a.chunks + b.chunks,
});

/**
 * One listing page of a batch (an `ingest` job). The page's keys are listed once and kept in S3, so a retry (a
 * killed worker, an outage) reads the same objects and writes the same lines: every object gets exactly one line.
 * Then: its objects are stored and checked, its manifest part written, its chunks enqueued, `batch.json` updated
 * with the running totals (the batch grows), and the next page's job added with the last key as its marker. The last
 * page joins the parts into the batch's `manifest.jsonl` and marks the listing done; the finalization runs after it.
 */
export async function processListingPage(payload: unknown, deps: ListingDeps, attempt: { final: boolean }): Promise<{ page: number; items: number; done: boolean }> {
  const job = parseWith(listingPageJobSchema, payload, 'listing job');
  const { store, log } = deps;
  const { batchId, page } = job;
  const info = parseWith(batchInfoSchema, await store.getJson(keys.batchInfo(batchId)), 'batch info');
  const listing = info.listing;
  if (!listing) throw new Error(`batch ${batchId} is not a listed batch`);
  if (listing.state !== 'listing' || listing.pages > page) return { page, items: 0, done: listing.state !== 'listing' };
  try {
    if (await store.exists(keys.batchCancel(batchId))) {
      await finishListing(store, info, job.totals, page, 'cancelled');
      log.info({ batchId, page }, 'listing stopped: the batch is cancelled');
      return { page, items: 0, done: true };
    }
    const source = openS3Prefix(listing.source, deps.s3Source);
    try {
      // The page's keys: listed on the first attempt, read back on the others.
      const pageKey = keys.batchListingPage(batchId, page);
      const kept = await store.getJsonIfExists(pageKey);
      let listed: ListingPage;
      if (kept) listed = parseWith(listingPageSchema, kept, pageKey);
      else {
        const fresh = await listS3Page(source, job.marker, listing.pageSize);
        listed = { page, objects: fresh.objects, truncated: fresh.truncated, ...(fresh.last ? { last: fresh.last } : {}) };
        await store.putJson(pageKey, listed);
      }
      const model = await getModelManifest(store, info.modelVersion);
      const result = await ingestEntries(
        { kind: 's3', entries: fromArray(s3ObjectEntries(source, listed.objects, deps.limits)) },
        { store, batchId, options: info.options, model, chunkSize: info.chunkSize, maxPixels: deps.maxPixels, maxSlidePixels: deps.maxSlidePixels, maxFieldPixels: deps.maxFieldPixels, firstImage: job.totals.items, firstChunk: job.totals.chunks, log },
      );
      await store.put(keys.batchManifestPart(batchId, page), toJsonLines(result.lines), 'application/x-ndjson');
      const totals = add(job.totals, { items: result.lines.length, accepted: result.accepted, rejected: result.lines.length - result.accepted, uniqueImages: result.uniqueImages, chunks: result.chunks });
      const children: FlowJob[] = chunkJobs({ ...info, chunks: totals.chunks }, result.lines.filter((l): l is AcceptedLine => !isRefused(l)));
      const more = listed.truncated && listed.last !== undefined;
      if (more) children.push(listingJob(info, { batchId, page: page + 1, marker: listed.last, totals }));
      // Children of the finalization, added while this page's job (also its child) is still running: the
      // finalization cannot start in between. Ids are deterministic, so a retry adds nothing twice.
      const parent = parentOf(deps.prefix, batchId);
      await deps.flow.addBulk(children.map((c) => ({ ...c, opts: { ...c.opts, parent } })));
      if (more) await store.putJson(keys.batchInfo(batchId), { ...info, ...totals, listing: { ...listing, pages: page + 1 } });
      else await finishListing(store, info, totals, page + 1, 'done');
      log.info({ batchId, page, items: result.lines.length, accepted: result.accepted, more, maxRssMB: Math.round(process.resourceUsage().maxRSS / 1024) }, 'listing page ingested');
      return { page, items: result.lines.length, done: !more };
    } finally {
      source.store.destroy();
    }
  } catch (error) {
    // A refusal no retry can change (the source's credentials or access) ends the listing now, not after the retries.
    const permanent = error instanceof SourceError && error.permanent;
    if (attempt.final || permanent) {
      // This page will not be tried again: the listing ends here, with the pages listed so far, so the batch still
      // completes and says why it is short.
      const reason = `listing page ${page + 1} failed ${permanent ? 'for good' : 'after its retries'}: ${(error as Error).message}`;
      await finishListing(store, info, job.totals, page, 'failed', reason).catch((e: Error) => log.error({ err: e, batchId }, 'could not record the listing failure'));
      log.error({ batchId, page, err: error }, 'listing failed for good');
      if (permanent) throw new UnrecoverableError(reason);
    }
    throw error;
  }
}

/** Is this the job's last try (attempts used up, or stalled as often as it may)? */
export const isFinalAttempt = (job: Pick<Job, 'attemptsMade' | 'opts'>) => job.attemptsMade + 1 >= (job.opts.attempts ?? 1);
