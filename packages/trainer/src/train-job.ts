import { createHash } from 'node:crypto';
import { UnrecoverableError } from 'bullmq';
import {
  buildModel,
  defaultPositiveClass,
  deserializeModel,
  getDatasetManifest,
  trainingContent,
  unknownTrainingText,
  getModelManifest,
  getProduction,
  listModels,
  keys,
  loadDatasetImages,
  mapLimit,
  operatingPoint,
  parseWith,
  preprocess,
  presets,
  trainJobSchema,
  defaultLearningRate,
  type BackendPreference,
  type Config,
  tf,
  type DatasetManifest,
  type ModelFiles,
  type Screening,
  type Logger,
  type ModelManifest,
  type ObjectStore,
  type PresetName,
  type TrainJob,
} from '@camflow/common';
import { GradientPool } from './parallel.js';
import { OrtGradients, type GradientEngine } from './ort-gradients.js';
import { FitCancelled, MIN_STEPS_BEFORE_COLLAPSE, evaluate, fitWithRestarts, notLearntReason, belowMajorityWarning, predictProbabilities, type EpochMetrics, type FitParams, type TensorData } from './fit.js';
import { gather, resolveSplitBy, splitIndices } from './split.js';
import { promoteIfBetter, publishModel, type SameImagesComparison } from './publish.js';
import { CheckpointStore, jobKey, paramsHash } from './checkpoint.js';

export interface TrainContext {
  store: ObjectStore;
  log: Logger;
  backend: string;
  /** Training threads on the CPU backends (wasm, cpu); 1 or absent: one. */
  threads?: number;
  /** Who computes the gradients on the CPU backends (`TRAIN_GRADIENTS`); absent: `auto`. */
  gradients?: Config['TRAIN_GRADIENTS'];
  /** Whether the operator asked to stop this run (`camflow train --cancel`). */
  cancelled?: () => Promise<boolean>;
  /** A run the retraining schedule queued: it does not replace a production model an operator promoted by hand. */
  scheduled?: boolean;
  /** Job identity: makes the published version deterministic for a retried job. */
  jobId: string;
  jobTimestamp: number;
  /** Each epoch: its attempt (from 0, as stored since the first release) and metrics, and the restarts so far. */
  progress?: (p: { attempt: number; restarts?: string[] } & EpochMetrics) => Promise<void> | void;
}

export type TrainOutcome =
  | { skipped: true; reason: string }
  | { skipped: false; version: string; dataset: string; datasetVersion: string; valAccuracy: number; promoted: boolean; promotion: string; attempts: number; restarts?: string[]; epochs: number; epochsAsked: number; bestEpoch: number; resumedFromEpoch?: number; comparison?: SameImagesComparison; warnings?: string[]; manifest: ModelManifest };

/**
 * The training inputs of a preset, made exactly as serving makes them. The snapshot's shards hold the images at
 * the snapshot's size; a preset with another input size gets each image decoded from its stored original and
 * resized by the same `preprocess` the cam-workers run, so training and serving see the same pixels.
 */
export async function trainingInputs(store: ObjectStore, manifest: DatasetManifest, size: number): Promise<Uint8Array> {
  if (manifest.size === size) return loadDatasetImages(store, manifest);
  const per = size * size * 3;
  const out = new Uint8Array(manifest.items.length * per);
  await mapLimit(manifest.items, 8, async (item, i) => {
    const { input } = await preprocess(await store.get(keys.original(item.sha256, item.ext)), size, undefined, { keepOriginal: false });
    out.set(input, i * per);
  });
  return out;
}

/** What a train job's options mean for the fit (the preset's learning rate when the job names none). */
export function fitParamsFor(params: TrainJob, numClasses: number): FitParams {
  return {
    preset: params.preset,
    numClasses,
    epochs: params.epochs,
    batchSize: params.batchSize,
    learningRate: params.learningRate ?? defaultLearningRate[params.preset],
    seed: params.seed,
    maxRestarts: params.maxRestarts,
    patience: params.collapsePatience,
    earlyStopPatience: params.earlyStopPatience,
    lrPlateauPatience: params.lrPlateauPatience,
    augment: params.augment,
    classWeights: params.classWeights,
  };
}

/** Version id of a training job's model: time of the job, plus a hash of its id. */
/** Median longer side of the dataset's originals (what a field is told apart from a cell by). */
export function medianCellSide(items: { width: number; height: number }[]): number | undefined {
  if (items.length === 0) return undefined;
  const sides = items.map((i) => Math.max(i.width, i.height)).sort((a, b) => a - b);
  return sides[Math.floor(sides.length / 2)];
}

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
    // After a rollback (production promoted by hand), a scheduled run publishes beside it without promoting: once the
    // schedule has published a usable model of this version and preset, training it again every night would only
    // publish copies. (A model someone trained by hand, with other settings, does not count.)
    if (production?.by === 'hand') {
      const done = (await listModels(ctx.store)).find((m) => m.origin === 'schedule' && !m.notLearnt && m.dataset.name === manifest.name && m.dataset.version === manifest.version && m.preset === params.preset && m.version !== production.version);
      if (done) {
        const reason = `dataset ${manifest.name}@${manifest.version} already trained (model ${done.version}), and production ${production.version} was promoted by hand: nothing new to train (\`camflow models promote ${done.version}\` serves that one)`;
        log.info(reason);
        return { skipped: true, reason };
      }
    }
  }
  const size = presets[params.preset].inputSize;
  const n = manifest.items.length;
  const images = await trainingInputs(ctx.store, manifest, size);
  const labels = manifest.items.map((i) => i.label);
  const splitBy = resolveSplitBy(manifest.items, params.splitBy);
  const split = splitIndices(manifest.items, params.validationFraction, params.seed, splitBy);
  if (split.train.length === 0 || split.validation.length === 0) {
    throw new UnrecoverableError(`dataset ${manifest.name} is too small to split (${n} items, ${splitBy} split)`);
  }
  const train = gather(images, labels, split.train, size);
  const validation = gather(images, labels, split.validation, size);
  const fitParams = fitParamsFor(params, manifest.classNames.length);
  const warnings: string[] = [];
  const share = split.validation.length / n;
  if (Math.abs(share - params.validationFraction) > 0.1) {
    warnings.push(`the ${splitBy} split put ${split.validation.length} of ${n} images (${(share * 100).toFixed(0)} %) in validation, not the ${(params.validationFraction * 100).toFixed(0)} % asked (--val-fraction): ${splitBy === 'group' ? 'a few patients hold many of the images' : 'too few images to split finely'}; more images, or more patients, give a truer split`);
    log.warn({ validation: split.validation.length, items: n, asked: params.validationFraction }, warnings[warnings.length - 1]!);
  }
  log.info({ version: manifest.version, train: split.train.length, validation: split.validation.length, splitBy, preset: params.preset, learningRate: fitParams.learningRate, backend: ctx.backend }, 'training started');
  const checkpoints = new CheckpointStore(ctx.store, jobKey(ctx.jobId), paramsHash({ ...fitParams, dataset: manifest.version, split: splitBy, v: params.validationFraction }));
  const resume = await checkpoints.load();
  if (resume) log.warn({ attempt: resume.attempt, epoch: resume.epoch }, 'resuming training from its last checkpoint');
  const pool = await gradientEngine(ctx, params.preset, manifest.classNames.length, log);
  // A collapsed attempt restarted is said where the user looks (the progress, the outcome), not only in the log.
  // Kept in the checkpoint, so a job resumed after a crash still says the restarts before it.
  const restarts: string[] = [...(resume?.restarts ?? [])];
  const result = await fitWithRestarts(fitParams, train, validation, {
    onEpoch: async (m, attempt) => {
      log.info({ attempt, ...m }, 'epoch');
      await ctx.progress?.({ attempt, ...m, ...(restarts.length ? { restarts: [...restarts] } : {}) });
    },
    onRestart: (attempt, reason) => {
      restarts.push(`attempt ${attempt + 1} collapsed (${reason}); restarted with a new initialisation`);
    },
    checkpoint: (c) => checkpoints.save(c, restarts),
    ...(resume ? { resume } : {}),
    ...(pool ? { pool } : {}),
    ...(ctx.cancelled ? { cancelled: ctx.cancelled } : {}),
    log,
  })
    .catch(async (error: unknown) => {
      if (!(error instanceof FitCancelled)) throw error;
      await checkpoints.clear();
      // Not retried, nothing published.
      throw new UnrecoverableError(error.message);
    })
    .finally(() => pool?.close());
  tf.dispose(resume?.weights ?? []);
  if (result.collapsed) {
    result.model.dispose();
    await checkpoints.clear();
    // Never published, never promoted; retrying the same job would collapse the same way.
    // How many optimizer steps each attempt had: a small set trained for few epochs may never leave chance.
    const steps = Math.ceil(split.train.length / params.batchSize) * params.epochs;
    const hint = steps < MIN_STEPS_BEFORE_COLLAPSE ? `; each attempt had at most ${steps} optimizer steps (${params.epochs} epochs of ${split.train.length} images), fewer than the ${MIN_STEPS_BEFORE_COLLAPSE} a net may need to leave chance: train for more epochs` : '';
    throw new UnrecoverableError(`training collapsed after ${result.attempts} attempt(s): ${result.collapseReason}${hint}`);
  }
  // The published weights are the best epoch's, and so are the metrics that gate promotion.
  const last = result.history.find((h) => h.epoch === result.bestEpoch) ?? result.history[result.history.length - 1]!;
  // The screening operating point, chosen on the validation images with the published (best-epoch) weights.
  const positiveClass = params.positiveClass ?? defaultPositiveClass(manifest.classNames);
  const positiveIndex = manifest.classNames.indexOf(positiveClass);
  if (positiveIndex < 0) throw new UnrecoverableError(`positiveClass "${positiveClass}" is not one of the dataset's classes (${manifest.classNames.join(', ')})`);
  const predictions = await predictProbabilities(result.model, validation);
  const probabilities = predictions.map((p) => p[positiveIndex]!);
  // A model that learnt nothing usable (not a collapse: its loss left chance) is published with a warning saying so,
  // and never promoted by the trainer (`notLearnt` in its manifest).
  const steps = Math.ceil(split.train.length / params.batchSize) * result.history.length;
  const argmax = predictions.map((p) => p.indexOf(Math.max(...p)));
  const notLearnt = notLearntReason(validation.labels, argmax, manifest.classNames, steps);
  const weak = notLearnt ? undefined : belowMajorityWarning(validation.labels, argmax, manifest.classNames);
  for (const warning of [notLearnt, weak]) {
    if (!warning) continue;
    warnings.push(warning);
    log.warn({ valAccuracy: last.valAccuracy }, warning);
  }
  const point = operatingPoint(probabilities, Array.from(validation.labels, (l) => l === positiveIndex), params.screenRecall);
  const screening: Screening = { positiveClass, threshold: point.threshold, targetRecall: params.screenRecall, validation: { images: probabilities.length, recall: point.recall, specificity: point.specificity } };
  log.info(screening, 'screening operating point');
  const version = versionFor(ctx.jobId, ctx.jobTimestamp);
  const published = await publishModel(ctx.store, result.model, {
    version,
    preset: params.preset,
    inputSize: size,
    classNames: manifest.classNames,
    dataset: { name: manifest.name, version: manifest.version, trainItems: split.train.length, validationItems: split.validation.length, splitBy, validation: split.validation },
    metrics: {
      valAccuracy: last.valAccuracy,
      valLoss: last.valLoss,
      epochs: result.history.length,
      bestEpoch: last.epoch,
      attempts: result.attempts,
      history: result.history.map((h) => ({ ...h })),
    },
    backend: pool instanceof OrtGradients ? `${ctx.backend}, gradients on onnxruntime-${pool.provider}` : ctx.backend,
    createdAt: new Date().toISOString(),
    screening,
    ...(notLearnt ? { notLearnt } : {}),
    ...(ctx.scheduled ? { origin: 'schedule' as const } : {}),
    cellSide: medianCellSide(manifest.items),
    ...(warnings.length ? { warnings } : {}),
  }, { int8: { calibration: train, evaluation: validation, log } });
  result.model.dispose();
  await checkpoints.clear();
  log.info({ version, valAccuracy: last.valAccuracy, resumedFromEpoch: resume?.epoch }, 'model published');
  const comparison = params.promote ? await compareWithProduction(ctx.store, manifest, split.validation, published, validation, argmax, log) : undefined;
  const gate = params.promote ? await promoteIfBetter(ctx.store, published, log, comparison, notLearnt, ctx.scheduled) : { promoted: false, reason: 'promotion not requested' };
  return {
    skipped: false,
    version,
    dataset: manifest.name,
    datasetVersion: manifest.version,
    valAccuracy: last.valAccuracy,
    promoted: gate.promoted,
    promotion: gate.reason,
    attempts: result.attempts,
    ...(restarts.length ? { restarts } : {}),
    epochs: result.history.length,
    epochsAsked: params.epochs,
    bestEpoch: last.epoch,
    ...(resume ? { resumedFromEpoch: resume.epoch } : {}),
    ...(comparison ? { comparison } : {}),
    ...(warnings.length ? { warnings } : {}),
    manifest: published,
  };
}

/**
 * Run the production model and the candidate on the candidate's validation images (each at its own input size,
 * made by the serving preprocess), so the promotion gate compares them on the same cells — leaving out the ones
 * production trained on (a snapshot that grew, or another one holding the same cells, puts them there: production
 * would be scored on what it has learnt by heart). Undefined when there is no production model or it has other classes.
 */
async function compareWithProduction(store: ObjectStore, dataset: DatasetManifest, validationIndices: number[], candidate: ModelManifest, candidateData: TensorData, candidatePredicted: number[], log: Logger): Promise<SameImagesComparison | undefined> {
  const channel = await getProduction(store);
  if (!channel) return undefined;
  const production = await getModelManifest(store, channel.version);
  if (production.classNames.join('\u0000') !== dataset.classNames.join('\u0000')) {
    log.warn({ production: production.version }, 'production model has other classes: promotion compares each model\'s own validation accuracy');
    return undefined;
  }
  const seen = await trainingContent(store, production);
  const keep = validationIndices.map((_, p) => p).filter((p) => !(seen.known && seen.sha256s.has(dataset.items[validationIndices[p]!]!.sha256)));
  const left = { production: production.version, ...(seen.known ? { trainedProduction: validationIndices.length - keep.length } : { productionTraining: unknownTrainingText(production, seen.why) }) };
  if (keep.length === 0) return { ...left, images: 0, candidateAccuracy: 0, productionAccuracy: 0 };
  const candidateAccuracy = keep.filter((p) => candidatePredicted[p] === candidateData.labels[p]).length / keep.length;
  // Production's inputs: the candidate's own when the sizes agree, else made from the originals at production's size.
  const productionData =
    production.inputSize !== candidate.inputSize
      ? gather(await trainingInputs(store, dataset, production.inputSize), dataset.items.map((i) => i.label), keep.map((p) => validationIndices[p]!), production.inputSize)
      : keep.length === validationIndices.length
        ? candidateData
        : gather(candidateData.images, candidateData.labels, keep, candidate.inputSize);
  const [json, weights] = await Promise.all([store.getJson<ModelFiles['modelJson']>(keys.modelFile(production.version, 'model.json')), store.get(keys.modelFile(production.version, 'weights.bin'))]);
  const model = await deserializeModel({ modelJson: json, weights });
  try {
    const productionAccuracy = (await evaluate(model, productionData, production.classNames.length)).valAccuracy;
    return { ...left, images: keep.length, candidateAccuracy, productionAccuracy };
  } finally {
    model.dispose();
  }
}

/**
 * The gradient engine for a run: on the CPU backends (wasm, cpu) ONNX Runtime (`auto`, `onnx`) or tfjs's
 * data-parallel pool (`tfjs`, more than one thread); on GPU and native backends tfjs itself (undefined). With `auto`,
 * an ONNX Runtime that cannot start (no native binary for this platform, a graph it refuses) is logged and the run
 * goes on with the tfjs pool; a pinned `onnx` fails the run instead.
 */
export async function gradientEngine(
  ctx: Pick<TrainContext, 'backend' | 'threads' | 'gradients'>,
  preset: PresetName,
  numClasses: number,
  log: Logger,
  startOnnx: (model: tf.LayersModel, threads: number, log: Logger) => Promise<GradientEngine> = (m, t, l) => OrtGradients.start(m, t, l),
): Promise<GradientEngine | undefined> {
  if (ctx.backend !== 'wasm' && ctx.backend !== 'cpu') return undefined;
  const threads = ctx.threads ?? 1;
  const choice = ctx.gradients ?? 'auto';
  if (choice !== 'tfjs') {
    const shape = buildModel(preset, numClasses);
    try {
      return await startOnnx(shape, threads, log);
    } catch (error) {
      if (choice === 'onnx') throw error;
      log.warn({ err: error }, 'training gradients on ONNX Runtime could not start (TRAIN_GRADIENTS=auto): using tfjs');
    } finally {
      shape.dispose();
    }
  }
  return threads > 1 ? GradientPool.start(threads, preset, numClasses, ctx.backend as BackendPreference, log) : undefined;
}
