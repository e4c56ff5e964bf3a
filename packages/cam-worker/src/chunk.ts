import {
  ImageInputError,
  encodePng,
  keys,
  mapLimit,
  parseWith,
  preprocess,
  camJobSchema,
  type BatchItem,
  type CamJob,
  type Logger,
  type ObjectStore,
  type RgbImage,
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
  ms: { fetchDecode: number; infer: number; post: number; store: number };
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
  const { manifest, engine } = await ctx.models.get(job.modelVersion);
  const t0 = performance.now();
  type Decoded = { item: BatchItem; original: RgbImage; input: Uint8Array } | { item: BatchItem; error: ImageInputError };
  const decoded = await mapLimit(job.items, ctx.storeParallelism, async (item): Promise<Decoded> => {
    const bytes = await store.get(keys.original(item.sha256, item.ext));
    try {
      const { input, original } = await preprocess(bytes, engine.inputSize, ctx.maxPixels);
      return { item, original, input };
    } catch (error) {
      if (error instanceof ImageInputError) return { item, error };
      throw error;
    }
  });
  const t1 = performance.now();
  const good = decoded.filter((d): d is Extract<Decoded, { input: Uint8Array }> => 'input' in d);
  const predictions: Prediction[] = [];
  for (let s = 0; s < good.length; s += ctx.inferBatch) {
    predictions.push(...(await engine.predict(good.slice(s, s + ctx.inferBatch).map((d) => d.input))));
  }
  const t2 = performance.now();
  let postMs = 0;
  const wants = new Set(job.options.outputs);
  const results = new Map<string, ImageResult>();
  for (const d of decoded) {
    if ('error' in d) {
      results.set(d.item.imageId, { batchId: job.batchId, imageId: d.item.imageId, name: d.item.name, status: 'failed', reason: d.error.reason, error: d.error.message, modelVersion: job.modelVersion });
    }
  }
  await mapLimit(good, ctx.storeParallelism, async (d, i) => {
    const p0 = performance.now();
    const { item, original } = d;
    const loc = localizeImage(predictions[i]!, engine.classifierWeights, manifest.classNames, original.width, original.height, job.options);
    const outputs: Partial<Record<'json' | 'heatmap' | 'overlay', string>> = {};
    const writes: Promise<void>[] = [];
    if (wants.has('heatmap') || wants.has('overlay')) {
      const rendered = renderImages(original, loc, job.options.alpha);
      if (wants.has('heatmap')) {
        outputs.heatmap = keys.resultHeatmap(job.batchId, item.imageId);
        writes.push(encodePng(rendered.heatmap, original.width, original.height).then((png) => store.put(outputs.heatmap!, png, 'image/png')));
      }
      if (wants.has('overlay')) {
        outputs.overlay = keys.resultOverlay(job.batchId, item.imageId);
        writes.push(encodePng(rendered.overlay, original.width, original.height).then((png) => store.put(outputs.overlay!, png, 'image/png')));
      }
    }
    if (wants.has('json')) outputs.json = keys.resultJson(job.batchId, item.imageId);
    const result: ImageResult = {
      batchId: job.batchId,
      imageId: item.imageId,
      name: item.name,
      status: 'ok',
      sha256: item.sha256,
      width: original.width,
      height: original.height,
      modelVersion: job.modelVersion,
      predicted: loc.predicted,
      probabilities: loc.probabilities,
      cams: loc.cams,
      featureSize: loc.featureSize,
      outputs,
    };
    if (outputs.json) writes.push(store.putJson(outputs.json, result));
    postMs += performance.now() - p0;
    await Promise.all(writes);
    results.set(item.imageId, result);
  });
  const t3 = performance.now();
  // Chunk results in submission order: the commit point of the chunk.
  const lines = job.items.map((item) => JSON.stringify(results.get(item.imageId)!)).join('\n') + '\n';
  await store.put(keys.resultChunk(job.batchId, job.chunk), lines, 'application/x-ndjson');
  const t4 = performance.now();
  const failed = decoded.length - good.length;
  const outcome = { ok: good.length, failed, ms: { fetchDecode: Math.round(t1 - t0), infer: Math.round(t2 - t1), post: Math.round(postMs), store: Math.round(t4 - t2 - postMs) } };
  log.info(outcome, 'chunk localized');
  return outcome;
}
