import { createHash } from 'node:crypto';
import { UnrecoverableError } from 'bullmq';
import {
  getDatasetManifest,
  getProduction,
  loadDatasetImages,
  parseWith,
  presets,
  tf,
  trainJobSchema,
  type Logger,
  type ModelManifest,
  type ObjectStore,
} from '@camflow/common';
import { fitWithRestarts, type EpochMetrics } from './fit.js';
import { gather, splitIndices } from './split.js';
import { promoteIfBetter, publishModel } from './publish.js';
import { CheckpointStore, jobKey, paramsHash } from './checkpoint.js';

export interface TrainContext {
  store: ObjectStore;
  log: Logger;
  backend: string;
  /** Job identity: makes the published version deterministic for a retried job. */
  jobId: string;
  jobTimestamp: number;
  progress?: (p: { attempt: number } & EpochMetrics) => Promise<void> | void;
}

export type TrainOutcome =
  | { skipped: true; reason: string }
  | { skipped: false; version: string; valAccuracy: number; promoted: boolean; promotion: string; attempts: number; epochs: number; resumedFromEpoch?: number; manifest: ModelManifest };

/** Resize packed square images to another side (bilinear) when a preset's input differs from the snapshot's. */
function resizePacked(images: Uint8Array, n: number, from: number, to: number): Uint8Array {
  if (from === to) return images;
  const out = new Uint8Array(n * to * to * 3);
  const step = 256;
  for (let s = 0; s < n; s += step) {
    const m = Math.min(step, n - s);
    const resized = tf.tidy(() =>
      tf.image.resizeBilinear(tf.tensor4d(images.subarray(s * from * from * 3, (s + m) * from * from * 3), [m, from, from, 3], 'int32').toFloat(), [to, to]).round().clipByValue(0, 255),
    );
    out.set(resized.dataSync(), s * to * to * 3);
    resized.dispose();
  }
  return out;
}

/** Version id of a training job's model: time of the job, plus a hash of its id. */
export function versionFor(jobId: string, timestamp: number): string {
  const stamp = new Date(timestamp).toISOString().replace(/[-:]/g, '').replace('T', '-').replace(/\..*$/, '');
  return `m${stamp}-${createHash('sha256').update(jobId).digest('hex').slice(0, 6)}`;
}

/**
 * One training run: load the dataset snapshot, split (seeded; by patient group when asked), fit with collapse
 * detection, publish the version (manifest last), promote when at least as good as production.
 */
export async function runTraining(payload: unknown, ctx: TrainContext): Promise<TrainOutcome> {
  const params = parseWith(trainJobSchema, payload, 'train job');
  const log = ctx.log.child({ dataset: params.dataset, jobId: ctx.jobId });
  const manifest = await getDatasetManifest(ctx.store, params.dataset, params.datasetVersion);
  if (params.skipIfUnchanged) {
    const production = await getProduction(ctx.store);
    if (production && production.dataset.name === manifest.name && production.dataset.version === manifest.version) {
      const reason = `dataset ${manifest.name}@${manifest.version} unchanged since production model ${production.version}`;
      log.info(reason);
      return { skipped: true, reason };
    }
  }
  const size = presets[params.preset].inputSize;
  const n = manifest.items.length;
  const images = resizePacked(await loadDatasetImages(ctx.store, manifest), n, manifest.size, size);
  const labels = manifest.items.map((i) => i.label);
  const split = splitIndices(manifest.items, params.validationFraction, params.seed, params.splitBy);
  if (split.train.length === 0 || split.validation.length === 0) {
    throw new UnrecoverableError(`dataset ${manifest.name} is too small to split (${n} items, ${params.splitBy} split)`);
  }
  const train = gather(images, labels, split.train, size);
  const validation = gather(images, labels, split.validation, size);
  log.info({ version: manifest.version, train: split.train.length, validation: split.validation.length, preset: params.preset, backend: ctx.backend }, 'training started');
  const fitParams = { preset: params.preset, numClasses: manifest.classNames.length, epochs: params.epochs, batchSize: params.batchSize, learningRate: params.learningRate, seed: params.seed, maxRestarts: params.maxRestarts, patience: params.collapsePatience };
  const checkpoints = new CheckpointStore(ctx.store, jobKey(ctx.jobId), paramsHash({ ...fitParams, dataset: manifest.version, split: params.splitBy, v: params.validationFraction }));
  const resume = await checkpoints.load();
  if (resume) log.warn({ attempt: resume.attempt, epoch: resume.epoch }, 'resuming training from its last checkpoint');
  const result = await fitWithRestarts(fitParams, train, validation, {
    onEpoch: async (m, attempt) => {
      log.info({ attempt, ...m }, 'epoch');
      await ctx.progress?.({ attempt, ...m });
    },
    checkpoint: (c) => checkpoints.save(c),
    ...(resume ? { resume } : {}),
    log,
  });
  resume?.weights.forEach((w) => w.dispose());
  if (result.collapsed) {
    result.model.dispose();
    await checkpoints.clear();
    // Never published, never promoted; retrying the same job would collapse the same way.
    throw new UnrecoverableError(`training collapsed after ${result.attempts} attempt(s): ${result.collapseReason}`);
  }
  const last = result.history[result.history.length - 1]!;
  const version = versionFor(ctx.jobId, ctx.jobTimestamp);
  const published = await publishModel(ctx.store, result.model, {
    version,
    preset: params.preset,
    inputSize: size,
    classNames: manifest.classNames,
    dataset: { name: manifest.name, version: manifest.version, trainItems: split.train.length, validationItems: split.validation.length, splitBy: params.splitBy },
    metrics: {
      valAccuracy: last.valAccuracy,
      valLoss: last.valLoss,
      epochs: result.history.length,
      attempts: result.attempts,
      history: result.history.map((h) => ({ ...h })),
    },
    backend: ctx.backend,
    createdAt: new Date().toISOString(),
  }, { int8: { calibration: train, evaluation: validation, log } });
  result.model.dispose();
  await checkpoints.clear();
  log.info({ version, valAccuracy: last.valAccuracy, resumedFromEpoch: resume?.epoch }, 'model published');
  const gate = params.promote ? await promoteIfBetter(ctx.store, published, log) : { promoted: false, reason: 'promotion not requested' };
  return {
    skipped: false,
    version,
    valAccuracy: last.valAccuracy,
    promoted: gate.promoted,
    promotion: gate.reason,
    attempts: result.attempts,
    epochs: result.history.length,
    ...(resume ? { resumedFromEpoch: resume.epoch } : {}),
    manifest: published,
  };
}
