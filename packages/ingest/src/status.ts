import { Job, type Queue } from 'bullmq';
import { CamflowError, batchCancelSchema, chunkJobId, webhookDeliverySchema, type WebhookDelivery, batchInfoSchema, batchSummarySchema, connectedWorkers, finalizeJobId, keys, listingPageJobId, noWorkerText, parseWith, publicReason, queueNames, type BatchInfo, type BatchSummary, type ObjectStore } from '@camflow/common/core';

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
  /** Accepted images in finished chunks, the rate since submission and the time left at that rate (running batches). */
  images?: { total: number; done: number; perSecond?: number; etaSeconds?: number };
  summary?: BatchSummary;
  /** Set when the batch was cancelled (`camflow batches cancel`): its remaining items got `cancelled` lines. */
  cancelled?: { at: string; reason: string };
  /** Why a batch is failed or stalled, and what to do. */
  reason?: string;
  /**
   * Workers connected to the queues a running batch waits on (when asked for: `serving`); a count the Redis server
   * would not give is left out.
   */
  workers?: { cam?: number; finalizer?: number; ingest?: number };
  /** A running batch that cannot move: no worker is connected to the queue its next step waits in, and how to start one. */
  waiting?: string;
  /** An S3-prefix batch whose current listing page failed and will be tried again: which attempt, and why. */
  listingRetry?: string;
  /**
   * Smear fields under way (when asked for: `serving`): the groups of cells (`FIELD_CELLS_PER_JOB` each) their chunks
   * sent over the pool, and how many are done — a whole-slide scan is one image for minutes, its groups move.
   */
  fieldParts?: { done: number; total: number };
  /**
   * A completed batch submitted with a webhook: how its delivery went (`delivered`, `attempts`, `error`), or
   * `pending: true` while the finalizer is still trying.
   */
  webhook?: WebhookDelivery | { origin: string; pending: true } | { origin: string; unrecorded: true };
  /** Set by `batchProgress` for a batch queued under another QUEUE_PREFIX: that prefix (its progress is known there). */
  queuedUnder?: string;
}

/**
 * A batch queued under another QUEUE_PREFIX than the command's: its jobs and workers are there, so here it would look
 * stalled and a repair would run it a second time on this prefix's workers. HTTP 409.
 */
export class OtherQueuePrefixError extends CamflowError {
  readonly statusCode = 409;
  readonly queuedUnder: string;
  constructor(
    /** The batch's info as read (so a caller that can go on, `batchProgress`, need not read it again). */
    readonly info: BatchInfo & { queuePrefix: string },
    here: string,
  ) {
    super('OTHER_QUEUE_PREFIX', `batch ${info.batchId} was queued under QUEUE_PREFIX=${info.queuePrefix}, not ${here}: its jobs and workers are there; set QUEUE_PREFIX=${info.queuePrefix} to follow or repair it`);
    this.queuedUnder = info.queuePrefix;
  }
}

/** Throws OtherQueuePrefixError when a batch's jobs were queued under another prefix than `queue`'s. */
export function assertSameQueuePrefix(info: BatchInfo, queue: Queue): void {
  const here = queue.opts.prefix ?? 'bull';
  if (info.queuePrefix !== undefined && info.queuePrefix !== here) throw new OtherQueuePrefixError({ ...info, queuePrefix: info.queuePrefix }, here);
}

/** The queues whose workers `batchStatus` counts for a running batch (the chunks', and the listing's for S3 prefixes). */
export interface ServingQueues {
  cam: Queue;
  ingest?: Queue | undefined;
}

/**
 * Status of a batch from its stored objects (the source of truth) and its finalization job. With `serving`, a running
 * batch also says how many workers are connected to the queues it waits on, and — when its next step waits in a
 * queue no worker serves — `waiting` says so (and no time left is estimated: none can be).
 */
export async function batchStatus(store: ObjectStore, batchQueue: Queue, batchId: string, serving?: ServingQueues): Promise<BatchStatus> {
  const raw = await store.getJsonIfExists(keys.batchInfo(batchId));
  if (!raw) return { batchId, state: 'unknown', chunks: { total: 0, done: 0 } };
  const info = shownInfo(parseWith(batchInfoSchema, raw, 'batch info'));
  const cancelRaw = await store.getJsonIfExists(keys.batchCancel(batchId));
  const cancelled = cancelRaw ? (({ cancelledAt, reason }) => ({ cancelled: { at: cancelledAt, reason } }))(parseWith(batchCancelSchema, cancelRaw, 'batch cancellation')) : {};
  const summary = await store.getJsonIfExists(keys.resultsSummary(batchId));
  if (summary) {
    const done = parseWith(batchSummarySchema, summary, 'batch summary');
    const webhook = info.webhook ? await webhookDelivery(store, batchId, info.webhook, done.completedAt) : undefined;
    return { batchId, state: 'completed', ...cancelled, info, chunks: { total: info.chunks, done: info.chunks }, images: { total: info.accepted, done: info.accepted }, summary: done, ...(webhook ? { webhook } : {}) };
  }
  assertSameQueuePrefix(info, batchQueue);
  const job = await Job.fromId(batchQueue, finalizeJobId(batchId));
  const repair = `run \`camflow batches repair ${batchId}\` (HTTP: POST /v1/batches/${batchId}/repair)`;
  if (!job) {
    return { batchId, state: 'stalled', ...cancelled, info, chunks: { total: info.chunks, done: 0 }, reason: `its jobs are not in Redis (lost in a Redis restart without persistence, or the submission was interrupted): ${repair}` };
  }
  // The chunks still to run: the images of the others are done. Status is polled (submit --wait: 4 times a second),
  // so the ids (`<batch>-c<n>`) are read only for a short tail; past it, the pending chunks are taken to be the last
  // ones (they are queued in order), which is exact but for the last, partial chunk.
  const { unprocessed: left = 0 } = await job.getDependenciesCount({ unprocessed: true });
  const unprocessed =
    left <= EXACT_PENDING_LIMIT
      ? ((await job.getDependencies({ unprocessed: { cursor: 0, count: Math.max(1, left) } })).unprocessed ?? []).map((k) => Number(/-c(\d+)$/.exec(k)?.[1])).filter((n) => Number.isInteger(n))
      : Array.from({ length: Math.min(left, info.chunks) }, (_, i) => info.chunks - 1 - i);
  const done = info.chunks - Math.min(info.chunks, unprocessed.length);
  const images = imageProgress(info, unprocessed, Date.now());
  if (await job.isFailed()) {
    // Read the job again now that its state is final: the copy read above may predate its last attempt (it was
    // between attempts then), and would report one attempt too few and an earlier reason (seen in a CI run).
    const final = (await Job.fromId(batchQueue, finalizeJobId(batchId))) ?? job;
    return { batchId, state: 'failed', ...cancelled, info, chunks: { total: info.chunks, done }, images, reason: `finalization failed after ${final.attemptsMade} attempts: ${publicReason(new Error(final.failedReason))}; ${repair}` };
  }
  const running: BatchStatus = { batchId, state: 'running', ...cancelled, info, chunks: { total: info.chunks, done }, images };
  if (!serving) return running;
  const fieldParts = left <= EXACT_PENDING_LIMIT ? await fieldPartsOf(serving.cam, batchId, unprocessed) : undefined;
  return withWorkers(fieldParts ? { ...running, fieldParts } : running, batchQueue, serving);
}

/** A running batch's workers, and what it waits for when a queue it needs has none. */
async function withWorkers(status: BatchStatus, batchQueue: Queue, serving: ServingQueues): Promise<BatchStatus> {
  const listing = status.info?.listing?.state === 'listing';
  const [cam, finalizer, ingest] = await Promise.all([connectedWorkers(serving.cam), connectedWorkers(batchQueue), listing && serving.ingest ? connectedWorkers(serving.ingest) : undefined]);
  const workers = { ...(cam !== undefined ? { cam } : {}), ...(finalizer !== undefined ? { finalizer } : {}), ...(ingest !== undefined ? { ingest } : {}) };
  // A listing page between its tries says why (a source the ingest workers cannot read would otherwise look like
  // a listing that has not started).
  const page = listing && serving.ingest ? await Job.fromId(serving.ingest, listingPageJobId(status.batchId, status.info!.listing!.pages)) : undefined;
  const retried = page && page.attemptsMade > 0 && page.failedReason && !(await page.isCompleted());
  const listingRetry = retried ? `listing page ${status.info!.listing!.pages + 1}: attempt ${page.attemptsMade} of ${page.opts.attempts ?? 1} failed (${publicReason(new Error(page.failedReason))}); it is tried again` : undefined;
  if (listingRetry) status = { ...status, listingRetry };
  const prefix = serving.cam.opts.prefix ?? 'bull';
  // The step the batch waits for: its listing, its chunks, or (every chunk done) its finalization.
  const waiting =
    (listing ? noWorkerText(queueNames.ingest, ingest, prefix) : undefined) ??
    (status.chunks.done < status.chunks.total ? noWorkerText(queueNames.cam, cam, prefix) : noWorkerText(queueNames.batch, finalizer, prefix));
  if (!waiting) return { ...status, workers };
  // Nothing moves: a rate since submission would promise a time it cannot keep.
  const images = status.images ? { total: status.images.total, done: status.images.done } : undefined;
  return { ...status, ...(images ? { images } : {}), workers, waiting };
}

/** A delivery takes at most ~25 s (3 tries of 5 s, 1 s and 4 s apart): a record missing for longer will not come. */
const WEBHOOK_PENDING_MS = 120_000;

/**
 * How a completed batch's webhook went, from the finalizer's record: pending for a while after completion, then
 * `unrecorded` (a batch completed before deliveries were recorded, or a finalizer that stopped while trying).
 */
async function webhookDelivery(store: ObjectStore, batchId: string, url: string, completedAt: string): Promise<NonNullable<BatchStatus['webhook']>> {
  const raw = await store.getJsonIfExists(keys.batchWebhook(batchId));
  if (raw !== undefined) return parseWith(webhookDeliverySchema, raw, 'webhook delivery');
  const origin = new URL(url).origin;
  return Date.now() - Date.parse(completedAt) < WEBHOOK_PENDING_MS ? { origin, pending: true } : { origin, unrecorded: true };
}

/**
 * A batch's info as status shows it: the webhook without its query or fragment (a receiver's token often rides
 * there); the finalizer reads the stored batch.json, not this.
 */
function shownInfo(info: BatchInfo): BatchInfo {
  if (!info.webhook) return info;
  const u = new URL(info.webhook);
  return { ...info, webhook: `${u.origin}${u.pathname}` };
}

/**
 * `batchStatus` for callers that only ask whether a batch exists or is done (results, download, eval, cancel, the
 * lists, a resubmission): a batch queued under another QUEUE_PREFIX reads as running there (`queuedUnder`), not as
 * an error — its results are in the object store whichever prefix ran it.
 */
export async function batchProgress(store: ObjectStore, batchQueue: Queue, batchId: string): Promise<BatchStatus> {
  try {
    return await batchStatus(store, batchQueue, batchId);
  } catch (error) {
    if (!(error instanceof OtherQueuePrefixError)) throw error;
    const { info } = error;
    return { batchId, state: 'running', info, chunks: { total: info.chunks, done: 0 }, queuedUnder: error.queuedUnder, reason: error.message };
  }
}

/** Pure: "running (3/5 chunks)", or "running under QUEUE_PREFIX=lab-a" (whose progress this prefix cannot see). */
export const stateText = (s: BatchStatus): string => (s.queuedUnder ? `${s.state} under QUEUE_PREFIX=${s.queuedUnder}` : `${s.state} (${s.chunks.done}/${s.chunks.total} chunks)`);

/** Pending chunks whose field parts `batchStatus` counts (the first ones: chunks run in order, fields are the slow ones). */
const FIELD_PART_CHUNKS = 16;

/** The field parts (children of pending chunk jobs) out and done; undefined when no pending chunk has any. */
async function fieldPartsOf(cam: Queue, batchId: string, pending: number[]): Promise<BatchStatus['fieldParts']> {
  let done = 0;
  let total = 0;
  // The lowest pending chunks: they run first (the ids come from a Redis set, in no order).
  for (const c of [...pending].sort((a, b) => a - b).slice(0, FIELD_PART_CHUNKS)) {
    const job = await Job.fromId(cam, chunkJobId(batchId, c));
    if (!job) continue;
    const n = await job.getDependenciesCount({ processed: true, unprocessed: true, ignored: true, failed: true });
    const finished = (n.processed ?? 0) + (n.ignored ?? 0) + (n.failed ?? 0);
    done += finished;
    total += finished + (n.unprocessed ?? 0);
  }
  return total > 0 ? { done, total } : undefined;
}

/** Pending chunks whose ids `batchStatus` reads for an exact image count; more are estimated. */
const EXACT_PENDING_LIMIT = 1000;

/** Pure: images in chunk `n` (chunk n holds accepted images n·size … (n+1)·size − 1). */
export const chunkImageCount = (n: number, chunkSize: number, accepted: number): number => Math.max(0, Math.min(chunkSize, accepted - n * chunkSize));

/** Pure: images done (those of the chunks not pending), the rate since submission, and the time left at that rate. */
export function imageProgress(info: Pick<BatchInfo, 'accepted' | 'chunkSize' | 'createdAt'>, pendingChunks: number[], now: number): NonNullable<BatchStatus['images']> {
  const left = pendingChunks.reduce((s, n) => s + chunkImageCount(n, info.chunkSize, info.accepted), 0);
  const done = Math.max(0, info.accepted - left);
  const seconds = (now - Date.parse(info.createdAt)) / 1000;
  if (done === 0 || !(seconds > 0)) return { total: info.accepted, done };
  const perSecond = done / seconds;
  return { total: info.accepted, done, perSecond: Math.round(perSecond * 10) / 10, etaSeconds: Math.round((info.accepted - done) / perSecond) };
}

/**
 * The newest batches first (ids are time-sortable), at most `limit`, from their stored `batch.json`. Listing reads
 * every batch prefix (1,000 per S3 request) and then only the `limit` newest objects.
 */
export async function listBatches(store: ObjectStore, limit = 50, before?: string): Promise<BatchInfo[]> {
  return (await listBatchPage(store, limit, before)).infos;
}

/**
 * A page of batches, newest first: the `limit` newest batch ids (before `before`, a batch id: ids sort by submission
 * time), and `next`, the cursor for the older ones when more may follow. A batch without a readable `batch.json` (an
 * upload still being ingested) is left out of the page but still moves the cursor past it.
 */
export async function listBatchPage(store: ObjectStore, limit = 50, before?: string): Promise<{ infos: BatchInfo[]; next?: string }> {
  const older = (p: string) => before === undefined || p < `batches/${before}/`;
  const all = (await store.listPrefixes('batches/', 10_000_000)).filter((p) => p !== 'batches/keys/' && older(p)).sort().reverse();
  const prefixes = all.slice(0, limit);
  const next = all.length > limit ? prefixes[prefixes.length - 1]!.slice('batches/'.length, -1) : undefined;
  const infos = await Promise.all(
    prefixes.map(async (p) => {
      const raw = await store.getJsonIfExists(`${p}batch.json`);
      const parsed = raw === undefined ? undefined : batchInfoSchema.safeParse(raw);
      return parsed?.success ? parsed.data : undefined;
    }),
  );
  const kept = infos.filter((i): i is BatchInfo => i !== undefined).sort((a, b) => (a.createdAt < b.createdAt ? 1 : a.createdAt > b.createdAt ? -1 : 0));
  return { infos: kept, ...(next ? { next } : {}) };
}

/** One row of `camflow batches list` / `GET /v1/batches`. */
export interface BatchListing {
  batchId: string;
  createdAt: string;
  /** `elsewhere`: queued under another QUEUE_PREFIX (`queuePrefix`), whose Redis keys say how it goes. */
  state: BatchState | 'elsewhere';
  /** What was submitted (a folder's or archive's name, an upload, an s3:// URL), for batches that recorded it. */
  source?: string;
  queuePrefix?: string;
  modelVersion: string;
  items: number;
  accepted: number;
  rejected: number;
  images?: BatchStatus['images'];
  /** An S3-prefix batch: its listing's state and pages so far. */
  listing?: { state: string; pages: number };
  /** Set when the batch was cancelled: a completed one then holds `cancelled` lines, not a full run. */
  cancelled?: { at: string; reason: string };
}

/** The newest batches with their state and progress, and the cursor for the older ones (`next`, when more may follow). */
export async function batchListingPage(store: ObjectStore, batchQueue: Queue, limit = 50, before?: string): Promise<{ batches: BatchListing[]; next?: string }> {
  const { infos, next } = await listBatchPage(store, limit, before);
  const batches = await Promise.all(
    infos.map(async (info): Promise<BatchListing> => {
      const status = await batchProgress(store, batchQueue, info.batchId);
      return {
        batchId: info.batchId,
        createdAt: info.createdAt,
        state: status.queuedUnder ? 'elsewhere' : status.state,
        ...(info.source ? { source: info.source } : {}),
        ...(info.queuePrefix ? { queuePrefix: info.queuePrefix } : {}),
        modelVersion: info.modelVersion,
        items: info.items,
        accepted: info.accepted,
        rejected: info.rejected,
        ...(status.images ? { images: status.images } : {}),
        ...(info.listing ? { listing: { state: info.listing.state, pages: info.listing.pages } } : {}),
        ...(status.cancelled ? { cancelled: status.cancelled } : {}),
      };
    }),
  );
  return { batches, ...(next ? { next } : {}) };
}
