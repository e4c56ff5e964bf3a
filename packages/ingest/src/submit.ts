import { basename, resolve } from 'node:path';
import { createHash, randomBytes } from 'node:crypto';
import type { FlowProducer, Queue } from 'bullmq';
import type { Redis } from 'ioredis';
import {
  batchPrioritySchema,
  webhookSubmitSchema,
  outputSchema,
  type BatchPriority,
  CamflowError,
  InvalidParameterError,
  batchInfoSchema,
  camOptionsSchema,
  checkTarget,
  namedModel,
  listModels,
  isRefused,
  sha256Hex,
  getProduction,
  keys,
  parseWith,
  toJsonLines,
  type AcceptedLine,
  type BatchInfo,
  type CamOptions,
  type Logger,
  type ObjectStore,
  withSpan,
} from '@camflow/common/core';
import { defaultSourceLimits, listS3Page, openS3Prefix, openSource, uploadSource, type OpenedSource, type S3SourceOptions, type SourceFile, type SourceLimits } from './sources.js';
import { forEachEntry, ingestEntries } from './ingest-entries.js';
import { DEFAULT_LISTING_PAGE, enqueueListing } from './listing.js';
import { claimKey, readClaim, type KeyClaims } from './key-claims.js';
import { enqueueBatch } from './enqueue.js';
import { batchProgress } from './status.js';
import { repairBatch } from './repair.js';

export interface SubmitOptions {
  store: ObjectStore;
  flow: FlowProducer;
  /** A Redis client (producer: no offline queue) for idempotency-key claims. */
  redis: Redis;
  prefix: string;
  /** Folder or archive path, or already-opened files (uploads). */
  source: string | SourceFile[];
  /** Pinned model version; default: the production channel at submit time. */
  modelVersion?: string;
  options?: Partial<CamOptions>;
  chunkSize?: number;
  /** Largest field or whole-slide scan (`MAX_SLIDE_PIXELS`); cells stay within `maxPixels`. */
  maxSlidePixels?: number;
  /** Fields above this (`MAX_FIELD_PIXELS`; default `maxPixels`) must be tiled TIFFs: they are read region by region. */
  maxFieldPixels?: number;
  /**
   * Same key and same content (entries, options): the existing batch, nothing enqueued. Same key and other
   * content: a ConflictError naming the key. Claiming a key is atomic, so concurrent submissions cannot mix.
   */
  idempotencyKey?: string;
  maxPixels?: number;
  limits?: Partial<SourceLimits>;
  /** Where `s3://` sources are read from (endpoint, credentials): here, for the check at submit; the ingest workers use their own. */
  s3Source?: S3SourceOptions;
  /** Keys per listing page of an `s3://` source (≤ 1,000, S3's most; SOURCE_S3_PAGE_SIZE). */
  listingPageSize?: number;
  /** How the submitter names an option in an error: the CLI's flag (`--target`), the HTTP field (`fields.target`); default `options.<name>`. */
  optionField?: (name: string) => string;
  /** Scheduling between batches (default `normal`); compared with the batch's own on a resubmission. */
  priority?: BatchPriority;
  /** Called (POST, signed) when the batch completes. */
  webhook?: string;
  /** Retries of a chunk job (stalls count against the same number) and the first backoff delay (doubling). */
  attempts?: number;
  backoffMs?: number;
  log?: Logger;
  /** With the queues, resubmitting the key of a batch whose jobs were lost re-creates them. */
  queues?: { cam: Queue; batch: Queue };
  /** Entries done, and the total when it is known in advance (folders and uploads). */
  onProgress?: (done: number, total: number | undefined) => void;
}

/** At most this many refusals are listed in a submission's answer (all of them are lines of its results). */
export const REFUSALS_LISTED = 100;

/**
 * A submission's answer: the batch, whether it existed (a retry with its key), and for a new batch the entries refused
 * at submission with why (`refused`, the first `REFUSALS_LISTED`; `rejected` counts them all) — a client learns of a
 * bad file when it sends it, not only from the results.
 */
export type SubmitResult = BatchInfo & { existing: boolean; refused?: { name: string; reason: string; error: string }[] };

export class NoModelError extends CamflowError {
  /** `newest`: the newest model published but never promoted, with what kept it out when the trainer said. */
  constructor(newest?: { version: string; why?: string | undefined }) {
    const unpromoted = newest
      ? `; ${newest.version} was published but not promoted${newest.why ? ` (${newest.why})` : ''}: \`camflow models promote ${newest.version}\` (POST /v1/models/${newest.version}/promote) serves it anyway`
      : '';
    super('NO_MODEL', `no production model: train one first (camflow train, POST /v1/train) or name a version (--model, or the model field over HTTP)${unpromoted}`);
  }
}

/** The refusal to submit without a production model, naming the newest model published (and what kept it out). */
export async function noModelError(store: ObjectStore): Promise<NoModelError> {
  // The hint is a courtesy: a listing that fails leaves the plain refusal, never another error in its place.
  const newest = (await listModels(store).catch(() => [])).at(-1);
  return new NoModelError(newest && { version: newest.version, why: newest.notLearnt });
}

/** The idempotency key is already taken by a batch with other content (HTTP 409). */
export class KeyConflictError extends CamflowError {
  readonly batchId: string;
  /** `what`: the setting that differs, when it is one (`priority high, this request low`). */
  constructor(key: string, batchId: string, what = 'other files or options') {
    super('KEY_CONFLICT', `idempotency key ${JSON.stringify(key.length > 80 ? `${key.slice(0, 77)}...` : key)} belongs to batch ${batchId}, submitted with ${what}: use a new key`);
    this.batchId = batchId;
  }
}

/** A fresh batch id: time-sortable and unique. */
export function newBatchId(): string {
  const stamp = new Date().toISOString().replace(/[-:]/g, '').replace(/\..*$/, '');
  return `b${stamp}-${randomBytes(6).toString('hex')}`;
}

export const keyDigest = (key: string) => sha256Hex(Buffer.from(key));

/**
 * Digest of a submission: its entries (name and content, or refusal) in order, and what is asked of them — with the
 * digest the same submission had before 2026-11-29 (`legacy`), so a batch keyed then is still the same batch on a retry.
 */
export class Fingerprint {
  private readonly hash = createHash('sha256');
  private readonly legacyHash = createHash('sha256');
  private done?: { current: string; accepted: string[] };
  constructor(options: CamOptions, chunkSize: number, modelVersion: string | undefined) {
    // The model, priority and webhook are compared with the batch's own (`settingConflict`): a retry naming the model
    // the batch already uses is the same request. Outputs are a set: `overlay,json` asks what `json,overlay` asks
    // (in the enum's order, which is the default's).
    const outputs = outputSchema.options.filter((o) => options.outputs.includes(o));
    this.hash.update(JSON.stringify({ options: { ...options, outputs }, chunkSize, modelVersion: null }));
    // Before: the outputs as given, the model as named.
    this.legacyHash.update(JSON.stringify({ options, chunkSize, modelVersion: modelVersion ?? null }));
  }
  add(name: string, content: string) {
    this.hash.update(`\n${name}\0${content}`);
    this.legacyHash.update(`\n${name}\0${content}`);
  }
  /** An S3 prefix is a folder: `s3://lab/2026` and `s3://lab/2026/` are one source (before: the URL as written). */
  addPrefix(url: string) {
    this.hash.update(`\ns3-prefix\0${url.replace(/\/+$/, '')}`);
    this.legacyHash.update(`\ns3-prefix\0${url}`);
  }
  /** The digest recorded for a new batch, and every digest that identifies this submission. */
  digests(): { current: string; accepted: string[] } {
    if (!this.done) {
      const current = this.hash.digest('hex');
      this.done = { current, accepted: [current, this.legacyHash.digest('hex')] };
    }
    return this.done;
  }
}

const sourceName = (source: string | SourceFile[]) => (typeof source === 'string' ? source : 'upload');

/** What a batch list shows of a source: a path's last name (not the submitting machine's folders), the s3:// URL, or the upload's size. */
export const sourceLabel = (source: string | SourceFile[]) =>
  typeof source !== 'string' ? `upload of ${source.length} file${source.length === 1 ? '' : 's'}` : source.startsWith('s3://') ? source : basename(resolve(source));

async function open(source: string | SourceFile[], limits: SourceLimits, s3?: S3SourceOptions): Promise<OpenedSource> {
  return typeof source === 'string' ? openSource(source, limits, s3) : uploadSource(source);
}

/**
 * Submit a batch: validate and store every entry content-addressed, write the batch manifest (one line per
 * entry, with its chunk, or with the reason it is refused), and enqueue a BullMQ flow: one `cam` job per chunk
 * under a `batch` parent that writes the results when the chunks are done.
 *
 * Memory is bounded: entries stream from the source with 8 in flight, and accepted model inputs are packed and
 * written as soon as their chunk is complete.
 */
export async function submitBatch(opts: SubmitOptions): Promise<SubmitResult> {
  // One span for the submission: BullMQ's spans for the jobs it enqueues (and, through them, the workers') are its children.
  return withSpan('camflow.submit', { 'camflow.source': typeof opts.source === 'string' ? (opts.source.startsWith('s3://') ? 's3' : 'path') : 'upload' }, async (span) => {
    const result = await submitInSpan(opts);
    span.setAttributes({ 'camflow.batch_id': result.batchId, 'camflow.items': result.items, 'camflow.existing': result.existing });
    return result;
  });
}

async function submitInSpan(opts: SubmitOptions): Promise<SubmitResult> {
  const { store, log } = opts;
  const options = parseWith(camOptionsSchema, opts.options ?? {}, 'options');
  const chunkSize = opts.chunkSize ?? 256;
  const field = opts.optionField ?? ((name: string) => `options.${name}`);
  if (opts.priority !== undefined) parseWith(batchPrioritySchema, opts.priority, field('priority'));
  if (opts.webhook !== undefined) parseWith(webhookSubmitSchema, opts.webhook, field('webhook'));
  if (!Number.isInteger(chunkSize) || chunkSize < 1 || chunkSize > 10_000) throw new InvalidParameterError('chunkSize', 'an integer in [1, 10000]', chunkSize);
  const limits = { ...defaultSourceLimits, ...opts.limits };
  const maxPixels = opts.maxPixels ?? 16_777_216;
  const attempts = opts.attempts ?? 8;
  const backoffMs = opts.backoffMs ?? 1000;
  const claims: KeyClaims = { store, redis: opts.redis, prefix: opts.prefix };
  // Fail here, not after ingesting everything, when Redis is down.
  await claims.redis.ping();
  const modelVersion = opts.modelVersion ?? (await getProduction(store))?.version;
  if (!modelVersion) throw await noModelError(store);
  const model = await namedModel(store, modelVersion); // fails early on an unknown version, naming the nearest
  // Everything a worker would refuse is refused here: a class the model does not have, a graph it lacks.
  checkTarget(options.target, model.classNames, field('target'));
  if (options.precision === 'int8' && !model.files.includes('model.int8.onnx')) {
    throw new InvalidParameterError(field('precision'), `fp32 (model ${modelVersion} has no int8 graph: it was published without training images or before int8 export)`, 'int8');
  }
  const digest = opts.idempotencyKey !== undefined ? keyDigest(opts.idempotencyKey) : undefined;
  const fingerprint = new Fingerprint(options, chunkSize, opts.modelVersion);
  // An S3 prefix is listed later, page by page: it is identified by its URL (a resubmission reads nothing).
  const s3Url = typeof opts.source === 'string' && opts.source.startsWith('s3://') ? opts.source : undefined;
  if (s3Url) fingerprint.addPrefix(s3Url);

  if (digest) {
    const claim = await readClaim(claims, digest);
    if (claim && s3Url) return existingOrConflict(opts, claim, fingerprint.digests().accepted);
    if (claim) {
      // Resubmission: hash what is submitted now (no storage writes) and compare.
      const fp = new Fingerprint(options, chunkSize, opts.modelVersion);
      const names: string[] = [];
      const contents: string[] = [];
      await forEachEntry(await open(opts.source, limits, opts.s3Source), 4, async (entry, i) => {
        names[i] = entry.name;
        contents[i] = 'refused' in entry ? `refused:${entry.refused.reason}` : await entry.read().then(sha256Hex, () => 'unreadable');
      });
      names.forEach((n, i) => {
        fp.add(n, contents[i]!);
      });
      return existingOrConflict(opts, claim, fp.digests().accepted);
    }
  }

  if (s3Url) return submitListed(opts, s3Url, { options, chunkSize, attempts, backoffMs, modelVersion, fingerprint: fingerprint.digests().current, ...(digest ? { digest } : {}), claims });

  const batchId = newBatchId();
  const total = Array.isArray(opts.source) ? opts.source.length : undefined;
  const ingested = await ingestEntries(await open(opts.source, limits, opts.s3Source), {
    store,
    batchId,
    options,
    model,
    chunkSize,
    maxPixels,
    maxSlidePixels: opts.maxSlidePixels,
    maxFieldPixels: opts.maxFieldPixels,
    onCommit: (name, content) => fingerprint.add(name, content),
    onProgress: opts.onProgress,
    total,
    log,
  });
  const { lines, accepted } = ingested;
  if (lines.length === 0) throw new InvalidParameterError('source', 'a folder, archive or upload holding at least one file', sourceName(opts.source));
  await store.put(keys.batchManifest(batchId), toJsonLines(lines), 'application/x-ndjson');
  const info: BatchInfo = parseWith(batchInfoSchema, {
    batchId,
    createdAt: new Date().toISOString(),
    modelVersion,
    items: lines.length,
    accepted,
    rejected: lines.length - accepted,
    uniqueImages: ingested.uniqueImages,
    chunks: ingested.chunks,
    chunkSize,
    options,
    attempts,
    backoffMs,
    fingerprint: fingerprint.digests().current,
    ...(digest ? { keyDigest: digest } : {}),
    queuePrefix: opts.prefix,
    source: sourceLabel(opts.source),
    priority: opts.priority ?? 'normal',
    ...(opts.webhook ? { webhook: opts.webhook } : {}),
  }, 'batch info');
  // batch.json before the claim and the jobs: a claimed key always leads to a complete batch, and a batch whose jobs
  // were lost (a crash before enqueuing, a Redis without persistence) is still known: `repair` re-creates its jobs.
  await store.putJson(keys.batchInfo(batchId), info);
  if (digest) {
    const winner = await claimKey(claims, digest, { batchId, fingerprint: info.fingerprint });
    if (winner.batchId !== batchId) {
      // Another submission with the same key got there first: ours is dropped, nothing of it is enqueued.
      await store.deleteMany([keys.batchInfo(batchId), keys.batchManifest(batchId), ...Array.from({ length: ingested.chunks }, (_, c) => keys.batchInputs(batchId, c))]).catch(() => undefined);
      return existingOrConflict(opts, winner, [info.fingerprint]);
    }
  }
  await enqueueBatch(opts.flow, info, lines.filter((l): l is AcceptedLine => !isRefused(l)));
  log?.info({ batchId, modelVersion, items: info.items, rejected: info.rejected, chunks: info.chunks }, 'batch submitted');
  const refused = lines.filter(isRefused).slice(0, REFUSALS_LISTED).map((l) => ({ name: l.name, reason: l.reason, error: l.error }));
  return { ...info, existing: false, ...(refused.length ? { refused } : {}) };
}

/**
 * Submit an S3 prefix: checked now (the URL, the bucket, at least one object, all from one short listing), listed
 * later page by page by `ingest` jobs (`processListingPage`) that store the objects, write the manifest and enqueue
 * the chunks as they go. The batch is returned at once, with `listing.state: listing`; it grows as pages are listed.
 */
async function submitListed(
  opts: SubmitOptions,
  url: string,
  p: { options: CamOptions; chunkSize: number; attempts: number; backoffMs: number; modelVersion: string; fingerprint: string; digest?: string; claims: KeyClaims },
): Promise<SubmitResult> {
  const { store, log } = opts;
  const source = openS3Prefix(url, opts.s3Source);
  try {
    const first = await listS3Page(source, undefined, 1);
    if (first.objects.length === 0 && !first.truncated) throw new InvalidParameterError('source', 'an S3 prefix holding at least one object', url);
  } finally {
    source.store.destroy();
  }
  const pageSize = opts.listingPageSize ?? DEFAULT_LISTING_PAGE;
  if (!Number.isInteger(pageSize) || pageSize < 1 || pageSize > 1000) throw new InvalidParameterError('listingPageSize', 'an integer in [1, 1000]', pageSize);
  const batchId = newBatchId();
  const info: BatchInfo = parseWith(
    batchInfoSchema,
    {
      batchId,
      createdAt: new Date().toISOString(),
      modelVersion: p.modelVersion,
      items: 0,
      accepted: 0,
      rejected: 0,
      uniqueImages: 0,
      chunks: 0,
      chunkSize: p.chunkSize,
      options: p.options,
      attempts: p.attempts,
      backoffMs: p.backoffMs,
      fingerprint: p.fingerprint,
      ...(p.digest ? { keyDigest: p.digest } : {}),
      queuePrefix: opts.prefix,
      source: url,
      priority: opts.priority ?? 'normal',
      ...(opts.webhook ? { webhook: opts.webhook } : {}),
      listing: { source: url, pageSize, state: 'listing', pages: 0 },
    },
    'batch info',
  );
  await store.putJson(keys.batchInfo(batchId), info);
  if (p.digest) {
    const winner = await claimKey(p.claims, p.digest, { batchId, fingerprint: info.fingerprint });
    if (winner.batchId !== batchId) {
      await store.deleteMany([keys.batchInfo(batchId)]).catch(() => undefined);
      return existingOrConflict(opts, winner, [info.fingerprint]);
    }
  }
  await enqueueListing(opts.flow, info, { batchId, page: 0, totals: { items: 0, accepted: 0, rejected: 0, uniqueImages: 0, chunks: 0 } });
  log?.info({ batchId, modelVersion: p.modelVersion, source: url, pageSize }, 'batch submitted: the prefix is listed by ingest jobs');
  return { ...info, existing: false };
}

/**
 * Pure: a setting a resubmission names that its batch does not have (the model, the priority, the webhook), in words;
 * undefined when each is left out or the batch's own. Taken silently, a new webhook would never be called.
 */
export function settingConflict(opts: Pick<SubmitOptions, 'modelVersion' | 'priority' | 'webhook'>, info: Pick<BatchInfo, 'modelVersion' | 'priority' | 'webhook'>): string | undefined {
  if (opts.modelVersion !== undefined && opts.modelVersion !== info.modelVersion) return `model ${info.modelVersion} (this request: ${opts.modelVersion})`;
  if (opts.priority !== undefined && opts.priority !== info.priority) return `priority ${info.priority} (this request: ${opts.priority})`;
  if (opts.webhook !== undefined && opts.webhook !== info.webhook) return `${info.webhook ? 'another webhook' : 'no webhook'} (this request: one to ${new URL(opts.webhook).origin})`;
  return undefined;
}

/**
 * Same content: the claimed batch. When its jobs are gone (a crash between claim and enqueue, a Redis restart
 * without persistence) and it is not being enqueued right now, the resubmission re-creates them: re-running a
 * submission with its key is how a user recovers. Other content: a conflict.
 */
async function existingOrConflict(opts: SubmitOptions, claim: { batchId: string; fingerprint: string }, accepted: readonly string[]): Promise<SubmitResult> {
  const { store, log } = opts;
  if (!accepted.includes(claim.fingerprint)) throw new KeyConflictError(opts.idempotencyKey!, claim.batchId);
  const info = parseWith(batchInfoSchema, await store.getJson(keys.batchInfo(claim.batchId)), 'batch info');
  const differs = settingConflict(opts, info);
  if (differs) throw new KeyConflictError(opts.idempotencyKey!, claim.batchId, differs);
  log?.info({ batchId: claim.batchId }, 'batch already submitted with this idempotency key');
  if (opts.queues && Date.now() - Date.parse(info.createdAt) > 5000 && (await batchProgress(store, opts.queues.batch, info.batchId)).state === 'stalled') {
    await repairBatch({ store, flow: opts.flow, queues: opts.queues, batchId: info.batchId, ...(log ? { log } : {}) });
  }
  return { ...info, existing: true };
}
