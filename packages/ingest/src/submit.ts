import { createHash, randomBytes } from 'node:crypto';
import { FlowProducer, type FlowJob } from 'bullmq';
import {
  CamflowError,
  InvalidParameterError,
  packInputs,
  camOptionsSchema,
  getModelManifest,
  getProduction,
  keys,
  mapLimit,
  parseWith,
  queueNames,
  type BatchItem,
  type CamJob,
  type CamOptions,
  type Logger,
  type ObjectStore,
  type RejectedItem,
} from '@camflow/common';
import { openSource, type SourceFile } from './sources.js';
import { rejectionReason, storeOriginal } from './store-image.js';

export interface SubmitOptions {
  store: ObjectStore;
  flow: FlowProducer;
  prefix: string;
  /** Folder or archive path, or already-opened files (uploads). */
  source: string | SourceFile[];
  /** Pinned model version; default: the production channel at submit time. */
  modelVersion?: string;
  options?: Partial<CamOptions>;
  chunkSize?: number;
  /** Same key, same batch: a resubmission returns the existing batch and enqueues nothing. */
  idempotencyKey?: string;
  maxPixels?: number;
  /** Retries of a chunk job and the first backoff delay (doubling). */
  attempts?: number;
  backoffMs?: number;
  log?: Logger;
  onProgress?: (done: number, total: number) => void;
}

export interface BatchInfo {
  batchId: string;
  createdAt: string;
  modelVersion: string;
  items: number;
  accepted: number;
  rejected: number;
  uniqueImages: number;
  chunks: number;
  options: CamOptions;
}

export class NoModelError extends CamflowError {
  constructor() {
    super('NO_MODEL', 'no production model: train one first (camflow train) or pass --model <version>');
  }
}

/** Deterministic batch id for an idempotency key; random otherwise. */
export function batchIdFor(idempotencyKey?: string): string {
  if (idempotencyKey) return `b${createHash('sha256').update(idempotencyKey).digest('hex').slice(0, 20)}`;
  const stamp = new Date().toISOString().replace(/[-:]/g, '').replace(/\..*$/, '');
  return `b${stamp}-${randomBytes(4).toString('hex')}`;
}

/** Job options of the chunks: retried with backoff; a chunk that exhausts them is reported, not blocking. */
export const chunkJobOptions = {
  // 8 attempts from 1 s, doubling: about two minutes of outage absorbed before a chunk is reported failed.
  attempts: 8,
  backoff: { type: 'exponential', delay: 1000 },
  ignoreDependencyOnFailure: true,
  removeOnComplete: { age: 24 * 3600, count: 10_000 },
  removeOnFail: { age: 7 * 24 * 3600 },
} as const;

/**
 * Submit a batch: validate and store every file content-addressed, write the batch manifest (one line per item,
 * refused files with their reason), and enqueue a BullMQ flow: one `cam` job per chunk under a `batch` parent
 * that writes the results when the chunks are done.
 */
export async function submitBatch(opts: SubmitOptions): Promise<BatchInfo & { existing: boolean }> {
  const { store, log } = opts;
  const options = parseWith(camOptionsSchema, opts.options ?? {}, 'options');
  const batchId = batchIdFor(opts.idempotencyKey);
  const previous = await store.getJsonIfExists<BatchInfo>(keys.batchInfo(batchId));
  if (previous) {
    log?.info({ batchId }, 'batch already submitted with this idempotency key');
    return { ...previous, existing: true };
  }
  const modelVersion = opts.modelVersion ?? (await getProduction(store))?.version;
  if (!modelVersion) throw new NoModelError();
  const model = await getModelManifest(store, modelVersion); // fails early on an unknown version
  if (options.precision === 'int8' && !model.files.includes('model.int8.onnx')) {
    throw new InvalidParameterError('options.precision', `fp32 (model ${modelVersion} has no int8 graph: it was published without training images or before int8 export)`, 'int8');
  }
  // Archive runs (no heatmap or overlay to draw) get their model inputs made here, once, and packed per chunk:
  // a cam-worker then makes one GET per chunk instead of one per image, and decodes nothing with libvips.
  const inputSize = options.outputs.includes('heatmap') || options.outputs.includes('overlay') ? undefined : model.inputSize;
  const files = typeof opts.source === 'string' ? await openSource(opts.source) : opts.source;
  const chunkSize = opts.chunkSize ?? 256;
  const known = new Set<string>();
  let done = 0;
  const lines: (BatchItem | RejectedItem)[] = [];
  const accepted: BatchItem[] = [];
  // Inputs of accepted items not yet packed; a pack is written as soon as its chunk is complete, so memory holds
  // at most a window and a chunk of them whatever the batch size.
  let unpacked: { sha256: string; png?: Buffer }[] = [];
  let packed = 0;
  const writePack = async (entries: { sha256: string; png?: Buffer }[]) => {
    const present = entries.filter((e): e is { sha256: string; png: Buffer } => e.png !== undefined);
    await store.put(keys.batchInputs(batchId, packed++), packInputs(inputSize!, present), 'application/octet-stream');
  };
  const windowSize = Math.max(chunkSize, 64);
  for (let w = 0; w < files.length; w += windowSize) {
    const part = await mapLimit(files.slice(w, w + windowSize), 8, async (file, i): Promise<(BatchItem & { inputPng?: Buffer }) | RejectedItem> => {
      const imageId = `i${String(w + i).padStart(7, '0')}`;
      try {
        const bytes = await file.read();
        const stored = await storeOriginal(store, bytes, opts.maxPixels ?? 268_402_689, known, inputSize);
        return { imageId, name: file.name, ...stored };
      } catch (error) {
        return { imageId, name: file.name, error: rejectionReason(error) };
      } finally {
        opts.onProgress?.(++done, files.length);
      }
    });
    for (const line of part) {
      if ('error' in line) {
        lines.push(line);
        continue;
      }
      const { inputPng, ...item } = line;
      lines.push(item);
      accepted.push(item);
      if (inputSize) unpacked.push({ sha256: item.sha256, ...(inputPng ? { png: inputPng } : {}) });
    }
    while (inputSize && unpacked.length >= chunkSize) {
      await writePack(unpacked.slice(0, chunkSize));
      unpacked = unpacked.slice(chunkSize);
    }
  }
  if (inputSize && unpacked.length > 0) await writePack(unpacked);
  await store.put(keys.batchManifest(batchId), lines.map((l) => JSON.stringify(l)).join('\n') + '\n', 'application/x-ndjson');
  const children: FlowJob[] = [];
  for (let c = 0; c * chunkSize < accepted.length; c++) {
    const data: CamJob = { batchId, chunk: c, modelVersion, items: accepted.slice(c * chunkSize, (c + 1) * chunkSize), options };
    children.push({
      name: 'chunk',
      queueName: queueNames.cam,
      data,
      opts: {
        ...chunkJobOptions,
        ...(opts.attempts ? { attempts: opts.attempts } : {}),
        ...(opts.backoffMs ? { backoff: { type: 'exponential', delay: opts.backoffMs } } : {}),
        jobId: `${batchId}-c${c}`,
      },
    });
  }
  await opts.flow.add({
    name: 'finalize',
    queueName: queueNames.batch,
    data: { batchId, modelVersion, chunks: children.length, chunkSize },
    opts: { jobId: batchId, attempts: 8, backoff: { type: 'exponential', delay: 1000 }, removeOnComplete: { age: 7 * 24 * 3600 } },
    children,
  });
  const info: BatchInfo = {
    batchId,
    createdAt: new Date().toISOString(),
    modelVersion,
    items: lines.length,
    accepted: accepted.length,
    rejected: lines.length - accepted.length,
    uniqueImages: known.size,
    chunks: children.length,
    options,
  };
  // Written last: its presence means the flow is enqueued, so a resubmission may return early.
  await store.putJson(keys.batchInfo(batchId), info);
  log?.info({ batchId, modelVersion, items: info.items, rejected: info.rejected, chunks: info.chunks }, 'batch submitted');
  return { ...info, existing: false };
}
