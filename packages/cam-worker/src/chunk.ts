import { UnrecoverableError, WaitingChildrenError } from 'bullmq';
import {
  ImageInputError,
  greyCellRefusal,
  InvalidParameterError,
  NotFoundError,
  encodePng,
  keys,
  createLimiter,
  decodeRgbPng,
  unpackInputs,
  parseWith,
  preprocess,
  camJobSchema,
  fieldCellsFailureSchema,
  fieldCellsResultSchema,
  imageResultSchema,
  issueText,
  parseJsonLines,
  type FieldCellsJob,
  type FieldCellsResult,
  type FieldPlan,
  batchCancelSchema,
  checkTarget,
  cellForeground,
  type BatchItem,
  type CamJob,
  type ImageResult,
  type Logger,
  type ObjectStore,
  type Preprocessed,
  type Prediction,
} from '@camflow/common';
import type { ModelCache } from './model-cache.js';
import { localizeImage, renderImages, screenCall } from './localize-image.js';
import { orFailForGood } from './unrecoverable.js';
import { assembleField, fieldCellsJobs, localizeFieldCells, planField } from './field.js';

export type { ImageResult };

/**
 * Split a chunk's items, in order, into inference batches of at most `maxItems` items and `maxPixels` decoded
 * pixels (an image larger than the budget is a batch of its own). With at most three batches decoded at once,
 * a worker's memory is bounded by the pixel budget, not by the chunk or the images in it.
 * @example planBatches([{ width: 100, height: 100 }, …], 32, 16_777_216)
 */
export function planBatches<T extends { width: number; height: number }>(items: readonly T[], maxItems: number, maxPixels: number): T[][] {
  if (!Number.isInteger(maxItems) || maxItems < 1) throw new InvalidParameterError('maxItems', 'a positive integer', maxItems);
  if (!(maxPixels > 0)) throw new InvalidParameterError('maxPixels', 'a positive number', maxPixels);
  const batches: T[][] = [];
  let current: T[] = [];
  let pixels = 0;
  for (const item of items) {
    const p = item.width * item.height;
    if (current.length > 0 && (current.length >= maxItems || pixels + p > maxPixels)) {
      batches.push(current);
      current = [];
      pixels = 0;
    }
    current.push(item);
    pixels += p;
  }
  if (current.length > 0) batches.push(current);
  return batches;
}

export interface ChunkContext {
  store: ObjectStore;
  models: ModelCache;
  log: Logger;
  /** Images per inference run; default: the engine's preferred batch. */
  inferBatch?: number | undefined;
  storeParallelism: number;
  maxPixels: number;
  /** Decoded pixels per inference batch (the memory bound, with at most three batches in flight). */
  batchPixels: number;
  /** Smear fields: the largest accepted, the largest decoded whole, the region side beyond that, cells per part. */
  fields?: { maxSlidePixels: number; maxFieldPixels: number; tile: number; cellsPerJob: number };
  /**
   * How a field's parts reach the worker pool: as `field-cells` children of this chunk's job in the `cam` queue
   * (the worker's), the chunk waiting for them. Without it (a chunk run in-process) the parts run here, in turn.
   */
  fanOut?: FanOut;
}

/** A chunk job's children: add them, wait for them, and what BullMQ says of one that failed for good. */
export interface FanOut {
  add(jobs: FieldCellsJob[]): Promise<void>;
  /** True when children are still pending: the chunk's job is then parked until they are done. */
  wait(): Promise<boolean>;
  failureOf(job: FieldCellsJob): Promise<string | undefined>;
}

export interface ChunkOutcome {
  ok: number;
  failed: number;
  /** Wall time, and where the main thread spent it: waiting for decodes, in inference, in CAM post-processing, on the final writes. */
  ms: { total: number; decodeWait: number; infer: number; post: number; storeTail: number };
}

/** The chunk's input pack by sha256, or undefined when there is none or it is unusable (originals are decoded). */
async function readInputPack(store: ObjectStore, job: CamJob, size: number, log: Logger): Promise<Map<string, Uint8Array> | undefined> {
  const bytes = await store.getIfExists(keys.batchInputs(job.batchId, job.chunk));
  if (!bytes) return undefined;
  try {
    const pack = unpackInputs(bytes);
    return pack.size === size ? pack.inputs : undefined;
  } catch (error) {
    log.warn({ err: (error as Error).message }, 'input pack unreadable: decoding the originals');
    return undefined;
  }
}

/** A stored model input, or undefined when it is not one camflow wrote (the original is then decoded instead). */
function cachedInput(bytes: Uint8Array): ReturnType<typeof decodeRgbPng> {
  try {
    return decodeRgbPng(bytes);
  } catch {
    return undefined;
  }
}

/**
 * Localize every image of a chunk. An image that cannot be decoded fails its own item with the reason; a
 * storage or model error fails the chunk so that BullMQ retries it. The chunk's JSONL is written last: it is what
 * marks the chunk done, so a crash midway leaves nothing that looks finished, and a retry overwrites the same keys.
 */
/** A result line as the finalizer will read it, or the image's failed line saying why it could not be. */
export function committable(result: ImageResult | undefined, item: BatchItem, job: CamJob): ImageResult {
  const failed = (error: string): ImageResult => ({ batchId: job.batchId, imageId: item.imageId, name: item.name, status: 'failed', reason: 'internal-error', error, modelVersion: job.modelVersion });
  if (!result) return failed('no result was made for this image: a defect in camflow; please report it');
  const parsed = imageResultSchema.safeParse(result);
  return parsed.success ? result : failed(`its result line was not valid (${issueText(parsed.error.issues)}): a defect in camflow; please report it with this image`.slice(0, 2000));
}

export async function processChunk(payload: unknown, ctx: ChunkContext): Promise<ChunkOutcome> {
  const job: CamJob = orFailForGood(() => parseWith(camJobSchema, payload, 'cam job'));
  const { store } = ctx;
  const log = ctx.log.child({ batchId: job.batchId, chunk: job.chunk, modelVersion: job.modelVersion });
  // A cancelled batch: every item of a chunk not yet committed gets its line, saying so (no model, no pixels).
  const cancel = await store.getJsonIfExists(keys.batchCancel(job.batchId));
  // (A chunk committed before the cancellation keeps its results, even when its job runs again.)
  if (cancel && !(await store.exists(keys.resultChunk(job.batchId, job.chunk)))) {
    const { cancelledAt, reason } = parseWith(batchCancelSchema, cancel, 'batch cancellation');
    const lines = job.items.map((item) => JSON.stringify({ batchId: job.batchId, imageId: item.imageId, name: item.name, status: 'failed', reason: 'cancelled', error: `batch cancelled at ${cancelledAt}: ${reason}`, modelVersion: job.modelVersion } satisfies ImageResult));
    await store.put(keys.resultChunk(job.batchId, job.chunk), `${lines.join('\n')}\n`, 'application/x-ndjson');
    log.info({ items: job.items.length }, 'batch cancelled: chunk committed as cancelled');
    return { ok: 0, failed: job.items.length, ms: { total: 0, decodeWait: 0, infer: 0, post: 0, storeTail: 0 } };
  }
  const loaded = await ctx.models.get(job.modelVersion, job.options.precision).catch((error: unknown) => {
    if (error instanceof NotFoundError) throw new UnrecoverableError(`model ${job.modelVersion}: ${error.message}`);
    throw error;
  });
  const { manifest, engine, precision } = loaded;
  orFailForGood(() => checkTarget(job.options.target, manifest.classNames));
  const t0 = performance.now();
  type Decoded = ({ item: BatchItem } & Preprocessed) | { item: BatchItem; error: ImageInputError };
  const wants = new Set(job.options.outputs);
  // The original's pixels are only needed to draw heatmaps and overlays; otherwise decode + resize is one pipeline.
  const keepOriginal = wants.has('heatmap') || wants.has('overlay');
  const fetchLimit = createLimiter(ctx.storeParallelism);
  // Archive runs: the chunk's model inputs, made at ingest, in one object (absent for older batches).
  const pack = keepOriginal ? undefined : await readInputPack(store, job, engine.inputSize, log);
  // A crop without colour (a monochrome camera, a `b-w` JPEG) would still get a class and a CAM — read off a stain
  // that is not there. It gets its own failed line instead, as a grey field does.
  const withColour = (d: Extract<Decoded, { input: Uint8Array }>): Decoded => {
    const grey = greyCellRefusal(d.input, d.width, d.height);
    return grey ? { item: d.item, error: grey } : d;
  };
  const decode = (item: BatchItem) =>
    fetchLimit(async (): Promise<Decoded> => {
      // The packed input decoded in-process; else the original, decoded and resized.
      const packedPng = pack?.get(item.sha256);
      const input = packedPng && cachedInput(packedPng);
      if (input && input.width === engine.inputSize && input.height === engine.inputSize) return withColour({ item, input: input.data, width: item.width, height: item.height });
      const bytes = await store.get(keys.original(item.sha256, item.ext));
      try {
        return withColour({ item, ...(await preprocess(bytes, engine.inputSize, ctx.maxPixels, { keepOriginal })) });
      } catch (error) {
        if (error instanceof ImageInputError) return { item, error };
        throw error;
      }
    });
  // Inference batches planned by count and decoded pixels. Batch k+1 decodes while batch k infers, and batch k+1
  // infers (ONNX Runtime's threads) while batch k is post-processed (this thread): at most three batches of
  // decoded images in memory.
  // Cells go through the batched pipeline below; each smear field is its own unit of work after them.
  const cellItems = job.items.filter((item) => item.kind !== 'field');
  const fieldItems = job.items.filter((item) => item.kind === 'field');
  // A chunk back from waiting for its fields' parts: its cell lines were kept, only the fields are left to do.
  const pendingKey = keys.chunkPendingLines(job.batchId, job.chunk);
  const pendingLines = fieldItems.length > 0 && cellItems.length > 0 ? await store.getIfExists(pendingKey) : undefined;
  const results = new Map<string, ImageResult>();
  let okCount = 0;
  if (pendingLines) {
    for (const r of parseJsonLines(pendingLines.toString('utf8'), imageResultSchema, pendingKey)) {
      results.set(r.imageId, r);
      if (r.status === 'ok') okCount++;
    }
  }
  const plan = pendingLines ? [] : planBatches(cellItems, ctx.inferBatch ?? engine.preferredBatch, ctx.batchPixels);
  const startDecode = (b: number) => {
    const all = Promise.all(plan[b]!.map(decode));
    all.catch(() => undefined); // observed when awaited; never an unhandled rejection meanwhile
    return all;
  };
  const writeLimit = createLimiter(ctx.storeParallelism);
  const writes: Promise<void>[] = [];
  // Every write is observed at once: a write that fails after the chunk has already failed is not an unhandled
  // rejection (which would kill the worker); the chunk's own await below reports it.
  const write = (task: () => Promise<void>) => {
    const p = writeLimit(task);
    p.catch(() => undefined);
    writes.push(p);
  };
  /** Working objects of the fields (plans, part inputs and results, kept cell lines), removed after the commit. */
  const leftovers: string[] = [];
  let decodeWait = 0;
  let inferMs = 0;
  let postMs = 0;
  let decoding = plan.length > 0 ? startDecode(0) : undefined;
  const infer = async (b: number) => {
    const w0 = performance.now();
    const batch = await decoding!;
    decoding = b + 1 < plan.length ? startDecode(b + 1) : undefined;
    const i0 = performance.now();
    decodeWait += i0 - w0;
    const good = batch.filter((d): d is Extract<Decoded, { input: Uint8Array }> => 'input' in d);
    const predictions: Prediction[] = good.length > 0 ? await engine.predict(good.map((d) => d.input)) : [];
    inferMs += performance.now() - i0;
    return { batch, good, predictions };
  };
  try {
    let next = plan.length > 0 ? infer(0) : undefined;
    next?.catch(() => undefined);
    for (let b = 0; b < plan.length; b++) {
      const { batch, good, predictions } = await next!;
      if (b + 1 < plan.length) {
        next = infer(b + 1);
        next.catch(() => undefined);
        // Let the next batch reach ONNX Runtime before this thread turns to post-processing.
        await new Promise<void>((resolve) => setImmediate(resolve));
      }
      for (const d of batch) {
        if ('error' in d) results.set(d.item.imageId, { batchId: job.batchId, imageId: d.item.imageId, name: d.item.name, status: 'failed', reason: d.error.reason, error: d.error.message, modelVersion: job.modelVersion });
      }
      const p0 = performance.now();
      good.forEach((d, i) => {
        const { item, original, width, height } = d;
        const foreground = job.options.restrictToCell ? cellForeground(d.input, engine.inputSize, width, height) : undefined;
        const loc = localizeImage(predictions[i]!, engine.classifierWeights, manifest.classNames, width, height, job.options, foreground);
        const outputs: Partial<Record<'json' | 'heatmap' | 'overlay', string>> = {};
        if (original) {
          const rendered = renderImages(original, loc, job.options.alpha);
          if (wants.has('heatmap')) {
            const key = (outputs.heatmap = keys.resultHeatmap(job.batchId, item.imageId));
            write(async () => store.put(key, await encodePng(rendered.heatmap, original.width, original.height), 'image/png'));
          }
          if (wants.has('overlay')) {
            const key = (outputs.overlay = keys.resultOverlay(job.batchId, item.imageId));
            write(async () => store.put(key, await encodePng(rendered.overlay, original.width, original.height), 'image/png'));
          }
        }
        if (wants.has('json')) outputs.json = keys.resultJson(job.batchId, item.imageId);
        const result: ImageResult = {
          batchId: job.batchId,
          imageId: item.imageId,
          name: item.name,
          status: 'ok',
          kind: 'cell',
          sha256: item.sha256,
          width,
          height,
          modelVersion: job.modelVersion,
          precision,
          engine: engine.device,
          predicted: loc.predicted,
          probabilities: loc.probabilities,
          cams: loc.cams,
          featureSize: loc.featureSize,
          outputs,
          ...(manifest.screening ? { screen: screenCall(manifest.screening, loc.probabilities) } : {}),
        };
        if (outputs.json) write(() => store.putJson(outputs.json!, result));
        results.set(item.imageId, result);
        okCount++;
      });
      postMs += performance.now() - p0;
    }
    if (fieldItems.length > 0) {
      const f0 = performance.now();
      const limits = ctx.fields ?? { maxSlidePixels: ctx.maxPixels, maxFieldPixels: ctx.maxPixels, tile: 4096, cellsPerJob: 64 };
      const fieldCtx = { store, engine, manifest, precision, job, ...limits, write, log };
      // Step 1, one field at a time (a field's decoded pixels and cell finding are the largest thing a worker holds):
      // cells found and cropped, in parts. A plan already in S3 (this job ran before) is reused.
      const plans = new Map<string, FieldPlan>();
      for (const item of fieldItems) {
        const planned = await planField(item, fieldCtx);
        if ('parts' in planned) plans.set(item.imageId, planned);
        else results.set(item.imageId, planned);
      }
      // Step 2: the parts with neither a result nor a failure record, as `field-cells` jobs over the pool.
      const outstanding: FieldCellsJob[] = [];
      for (const plan of plans.values()) {
        for (const part of fieldCellsJobs(plan, job)) {
          const done = (await store.exists(keys.fieldCellsResult(job.batchId, part.imageId, part.part))) || (await store.exists(keys.fieldCellsFailure(job.batchId, part.imageId, part.part)));
          if (!done) outstanding.push(part);
        }
      }
      if (outstanding.length > 0 && ctx.fanOut) {
        // The chunk's cell lines are kept in S3 while it waits: when its job comes back, only the fields are left.
        await Promise.all(writes);
        if (cellItems.length > 0 && !pendingLines) await store.put(pendingKey, `${cellItems.map((item) => JSON.stringify(results.get(item.imageId)!)).join('\n')}\n`, 'application/x-ndjson');
        await ctx.fanOut.add(outstanding);
        if (await ctx.fanOut.wait()) {
          log.info({ fields: plans.size, parts: outstanding.length }, 'field cells fanned out: the chunk waits for them');
          throw new WaitingChildrenError();
        }
      } else {
        for (const part of outstanding) await localizeFieldCells(part, { store, models: ctx.models, inferBatch: ctx.inferBatch, log });
      }
      // Step 3: each field assembled from its parts (a part missing now failed for good).
      for (const item of fieldItems) {
        const plan = plans.get(item.imageId);
        if (!plan) continue;
        const parts = await Promise.all(fieldCellsJobs(plan, job).map((part) => partOutcome(store, part, ctx.fanOut)));
        const result = await assembleField(item, plan, parts, fieldCtx);
        leftovers.push(keys.fieldPlan(job.batchId, item.imageId), ...plan.parts.flatMap((_, p) => [keys.fieldCellsInput(job.batchId, item.imageId, p), keys.fieldCellsResult(job.batchId, item.imageId, p), keys.fieldCellsFailure(job.batchId, item.imageId, p)]));
        results.set(item.imageId, result);
        if (result.status === 'ok') okCount++;
      }
      if (cellItems.length > 0) leftovers.push(pendingKey);
      inferMs += performance.now() - f0;
    }
  } catch (error) {
    // Let the writes already started settle before the attempt ends, so a retry does not race them.
    await Promise.allSettled(writes);
    throw error;
  }
  const t2 = performance.now();
  await Promise.all(writes);
  // Chunk results in submission order: the commit point of the chunk. Each line is checked against the schema the
  // finalizer reads it with: a line it would refuse (a defect) fails that image with the reason, never the batch.
  const lines = `${job.items.map((item) => JSON.stringify(committable(results.get(item.imageId), item, job))).join('\n')}\n`;
  await store.put(keys.resultChunk(job.batchId, job.chunk), lines, 'application/x-ndjson');
  const t4 = performance.now();
  const outcome: ChunkOutcome = {
    ok: okCount,
    failed: job.items.length - okCount,
    ms: { total: Math.round(t4 - t0), decodeWait: Math.round(decodeWait), infer: Math.round(inferMs), post: Math.round(postMs), storeTail: Math.round(t4 - t2) },
  };
  // The fields' part inputs are not needed once the chunk is committed (a slide's can be hundreds of MB). A job
  // that runs again after this finds no plan and finds the cells again: the same cells, the same lines.
  if (leftovers.length > 0) await store.deleteMany(leftovers).catch((error: Error) => log.warn({ err: error.message }, 'could not remove the fields\' part inputs'));
  log.info({ ...outcome, maxRssMB: Math.round(process.resourceUsage().maxRSS / 1024) }, 'chunk localized');
  return outcome;
}

/** A part's localizations, or why it has none: its failure record, BullMQ's reason, or that its job ended without one. */
async function partOutcome(store: ObjectStore, part: FieldCellsJob, fanOut: FanOut | undefined): Promise<FieldCellsResult | string> {
  const resultKey = keys.fieldCellsResult(part.batchId, part.imageId, part.part);
  const body = await store.getJsonIfExists(resultKey);
  if (body) return parseWith(fieldCellsResultSchema, body, 'field cells result');
  const record = await store.getJsonIfExists(keys.fieldCellsFailure(part.batchId, part.imageId, part.part));
  if (record) return parseWith(fieldCellsFailureSchema, record, 'field cells failure').error;
  return (await fanOut?.failureOf(part)) ?? 'its job ended without a result';
}
