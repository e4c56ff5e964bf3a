import {
  ImageInputError,
  encodePng,
  keys,
  createLimiter,
  decodeRgbPng,
  unpackInputs,
  parseWith,
  preprocess,
  camJobSchema,
  type BatchItem,
  type CamJob,
  type Logger,
  type ObjectStore,
  type Preprocessed,
  type Precision,
  type Prediction,
} from '@camflow/common';
import type { ModelCache } from './model-cache.js';
import { localizeImage, renderImages, type ClassLocalization } from './localize-image.js';

/** One line of a batch's results. */
export type ImageResult =
  | {
      batchId: string;
      imageId: string;
      name: string;
      status: 'ok';
      sha256: string;
      width: number;
      height: number;
      modelVersion: string;
      /** The serving graph that computed this result. */
      precision: Precision;
      predicted: { index: number; label: string; probability: number };
      probabilities: Record<string, number>;
      cams: ClassLocalization[];
      /** Resolution of each class's `featureCam`. */
      featureSize: { width: number; height: number };
      outputs: Partial<Record<'json' | 'heatmap' | 'overlay', string>>;
    }
  | { batchId: string; imageId: string; name: string; status: 'failed'; reason: string; error: string; modelVersion?: string };

export interface ChunkContext {
  store: ObjectStore;
  models: ModelCache;
  log: Logger;
  inferBatch: number;
  storeParallelism: number;
  maxPixels: number;
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
export async function processChunk(payload: unknown, ctx: ChunkContext): Promise<ChunkOutcome> {
  const job: CamJob = parseWith(camJobSchema, payload, 'cam job');
  const { store } = ctx;
  const log = ctx.log.child({ batchId: job.batchId, chunk: job.chunk, modelVersion: job.modelVersion });
  const { manifest, engine, precision } = await ctx.models.get(job.modelVersion, job.options.precision);
  const t0 = performance.now();
  type Decoded = ({ item: BatchItem } & Preprocessed) | { item: BatchItem; error: ImageInputError };
  const wants = new Set(job.options.outputs);
  // The original's pixels are only needed to draw heatmaps and overlays; otherwise decode + resize is one pipeline.
  const keepOriginal = wants.has('heatmap') || wants.has('overlay');
  // Decoding (libuv threads) runs ahead of inference (main thread / ONNX Runtime threads): every decode is queued
  // now behind a limiter, and each inference batch waits only for its own images.
  const fetchLimit = createLimiter(ctx.storeParallelism);
  // Archive runs: the chunk's model inputs, made at ingest, in one object (absent for older batches).
  const pack = keepOriginal ? undefined : await readInputPack(store, job, engine.inputSize, log);
  const decodes = job.items.map((item) =>
    fetchLimit(async (): Promise<Decoded> => {
      // The packed input decoded in-process; else the original, decoded and resized.
      const packedPng = pack?.get(item.sha256);
      const input = packedPng && cachedInput(packedPng);
      if (input && input.width === engine.inputSize && input.height === engine.inputSize) return { item, input: input.data, width: item.width, height: item.height };
      const bytes = await store.get(keys.original(item.sha256, item.ext));
      try {
        return { item, ...(await preprocess(bytes, engine.inputSize, ctx.maxPixels, { keepOriginal })) };
      } catch (error) {
        if (error instanceof ImageInputError) return { item, error };
        throw error;
      }
    }),
  );
  // A storage error anywhere fails the chunk; do not leave rejected promises unobserved meanwhile.
  const allDecoded = Promise.all(decodes);
  allDecoded.catch(() => undefined);
  const writeLimit = createLimiter(ctx.storeParallelism);
  const writes: Promise<void>[] = [];
  const results = new Map<string, ImageResult>();
  let decodeWait = 0;
  let inferMs = 0;
  let postMs = 0;
  let okCount = 0;
  // Inference of batch k+1 (ONNX Runtime's own threads) overlaps the CAM post-processing of batch k (this thread).
  const infer = async (s: number) => {
    const w0 = performance.now();
    const batch = await Promise.all(decodes.slice(s, s + ctx.inferBatch));
    const i0 = performance.now();
    decodeWait += i0 - w0;
    const good = batch.filter((d): d is Extract<Decoded, { input: Uint8Array }> => 'input' in d);
    const predictions: Prediction[] = await engine.predict(good.map((d) => d.input));
    inferMs += performance.now() - i0;
    return { batch, good, predictions };
  };
  let next = decodes.length > 0 ? infer(0) : undefined;
  next?.catch(() => undefined);
  for (let s = 0; s < decodes.length; s += ctx.inferBatch) {
    const { batch, good, predictions } = await next!;
    if (s + ctx.inferBatch < decodes.length) {
      next = infer(s + ctx.inferBatch);
      next.catch(() => undefined); // observed when awaited; never an unhandled rejection meanwhile
      // Let the next batch reach ONNX Runtime before this thread turns to post-processing.
      await new Promise<void>((resolve) => setImmediate(resolve));
    }
    for (const d of batch) {
      if ('error' in d) results.set(d.item.imageId, { batchId: job.batchId, imageId: d.item.imageId, name: d.item.name, status: 'failed', reason: d.error.reason, error: d.error.message, modelVersion: job.modelVersion });
    }
    const p0 = performance.now();
    good.forEach((d, i) => {
      const { item, original, width, height } = d;
      const loc = localizeImage(predictions[i]!, engine.classifierWeights, manifest.classNames, width, height, job.options);
      const outputs: Partial<Record<'json' | 'heatmap' | 'overlay', string>> = {};
      if (original) {
        const rendered = renderImages(original, loc, job.options.alpha);
        if (wants.has('heatmap')) {
          const key = (outputs.heatmap = keys.resultHeatmap(job.batchId, item.imageId));
          writes.push(writeLimit(async () => store.put(key, await encodePng(rendered.heatmap, original.width, original.height), 'image/png')));
        }
        if (wants.has('overlay')) {
          const key = (outputs.overlay = keys.resultOverlay(job.batchId, item.imageId));
          writes.push(writeLimit(async () => store.put(key, await encodePng(rendered.overlay, original.width, original.height), 'image/png')));
        }
      }
      if (wants.has('json')) outputs.json = keys.resultJson(job.batchId, item.imageId);
      const result: ImageResult = {
        batchId: job.batchId,
        imageId: item.imageId,
        name: item.name,
        status: 'ok',
        sha256: item.sha256,
        width,
        height,
        modelVersion: job.modelVersion,
        precision,
        predicted: loc.predicted,
        probabilities: loc.probabilities,
        cams: loc.cams,
        featureSize: loc.featureSize,
        outputs,
      };
      if (outputs.json) writes.push(writeLimit(() => store.putJson(outputs.json!, result)));
      results.set(item.imageId, result);
      okCount++;
    });
    postMs += performance.now() - p0;
  }
  await allDecoded;
  const t2 = performance.now();
  await Promise.all(writes);
  // Chunk results in submission order: the commit point of the chunk.
  const lines = job.items.map((item) => JSON.stringify(results.get(item.imageId)!)).join('\n') + '\n';
  await store.put(keys.resultChunk(job.batchId, job.chunk), lines, 'application/x-ndjson');
  const t4 = performance.now();
  const outcome: ChunkOutcome = {
    ok: okCount,
    failed: job.items.length - okCount,
    ms: { total: Math.round(t4 - t0), decodeWait: Math.round(decodeWait), infer: Math.round(inferMs), post: Math.round(postMs), storeTail: Math.round(t4 - t2) },
  };
  log.info(outcome, 'chunk localized');
  return outcome;
}
