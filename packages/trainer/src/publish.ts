import type { Redis } from 'ioredis';
import {
  buildInt8Graph,
  cacheWeightsOnCpu,
  exportOnnx,
  getProduction,
  keys,
  modelChannel,
  promote,
  serializeModel,
  type tf,
  type Logger,
  type ModelManifest,
  type ObjectStore,
  type PackedImages,
  type ProductionChannel,
} from '@camflow/common';

export interface PublishOptions {
  /**
   * Also publish the int8 serving graph `model.int8.onnx`: activations calibrated on `calibration` (training
   * images), compared with the float graph on `evaluation` (validation images); the comparison goes in the manifest.
   */
  int8?: { calibration: PackedImages; evaluation: PackedImages; log?: Logger };
}

/**
 * Publish a model version: weights and topology first, the manifest last (the commit point: a crash before it
 * leaves no visible version).
 */
export async function publishModel(store: ObjectStore, model: tf.LayersModel, manifest: Omit<ModelManifest, 'files' | 'int8'>, options: PublishOptions = {}): Promise<ModelManifest> {
  await cacheWeightsOnCpu(model); // the synchronous reads below, on any backend
  const files = await serializeModel(model);
  await store.put(keys.modelFile(manifest.version, 'weights.bin'), files.weights);
  await store.putJson(keys.modelFile(manifest.version, 'model.json'), files.modelJson);
  // The serving graph for ONNX Runtime: logits and channels-last features.
  await store.put(keys.modelFile(manifest.version, 'model.onnx'), exportOnnx(model));
  const full: ModelManifest = { ...manifest, files: ['model.json', 'weights.bin', 'model.onnx'] };
  if (options.int8) {
    const started = performance.now();
    const { bytes, report } = await buildInt8Graph(model, options.int8.calibration, options.int8.evaluation);
    await store.put(keys.modelFile(manifest.version, 'model.int8.onnx'), bytes);
    full.files.push('model.int8.onnx');
    full.int8 = report;
    const { activationMax: _, ...summary } = report;
    options.int8.log?.info({ version: manifest.version, ...summary, ms: Math.round(performance.now() - started) }, 'int8 serving graph built');
  }
  await store.putJson(keys.modelFile(manifest.version, 'manifest.json'), full);
  return full;
}

/** Candidate and production accuracy measured on the same validation images. */
export interface SameImagesComparison {
  production: string;
  /** The candidate's validation images both models are scored on: those production did not train on. */
  images: number;
  /** Validation images left out because production trained on them (the same content in its training snapshot). */
  trainedProduction?: number;
  /** Why production's training images cannot be told (its snapshot removed, or published before it recorded them). */
  productionTraining?: string;
  candidateAccuracy: number;
  productionAccuracy: number;
}

/**
 * Promotion gate: at least as good as production. With `comparison` (both models run on the candidate's validation
 * images) the decision is made on the same cells; without one (no production yet, or other classes) it falls back to
 * each model's own validation accuracy. A model that tells the classes apart no better than always answering the
 * majority class (`notLearnt`: why) is never promoted — not even as the first model: it would count every cell as
 * that class. `camflow models promote` still can.
 */
export async function promoteIfBetter(
  store: ObjectStore,
  manifest: ModelManifest,
  log?: Logger,
  comparison?: SameImagesComparison,
  notLearnt?: string,
  scheduled = false,
): Promise<{ promoted: boolean; production?: ProductionChannel; reason: string }> {
  const current = await getProduction(store);
  if (notLearnt) {
    const reason = `${notLearnt} (\`camflow models promote ${manifest.version}\` to serve it anyway)`;
    log?.warn({ version: manifest.version, production: current?.version ?? null }, `not promoted: ${reason}`);
    return { promoted: false, ...(current ? { production: current } : {}), reason };
  }
  // A rollback stays rolled back: the schedule publishes beside a model an operator chose, it does not replace it.
  if (scheduled && current?.by === 'hand') {
    const reason = `production ${current.version} was promoted by hand (${current.promotedAt}): a scheduled run does not replace it (\`camflow models promote ${manifest.version}\` to serve this one)`;
    log?.info({ version: manifest.version, production: current.version }, `not promoted: ${reason}`);
    return { promoted: false, production: current, reason };
  }
  if (current && comparison && comparison.production === current.version) {
    if (comparison.images === 0) {
      const reason = `production ${current.version} trained on all ${comparison.trainedProduction} of its validation images: no image is new to both models to compare them on (\`camflow models promote ${manifest.version}\` to serve it)`;
      log?.info({ version: manifest.version, ...comparison }, `not promoted: ${reason}`);
      return { promoted: false, production: current, reason };
    }
    const out = comparison.trainedProduction ? `; ${comparison.trainedProduction} more left out: production trained on them` : comparison.productionTraining ? `; which of them production trained on cannot be told: ${comparison.productionTraining}` : '';
    const same = `on the same ${comparison.images} validation images${out}: ${comparison.candidateAccuracy.toFixed(4)} vs production ${current.version} ${comparison.productionAccuracy.toFixed(4)}`;
    if (comparison.candidateAccuracy < comparison.productionAccuracy) {
      log?.info({ version: manifest.version, ...comparison }, `not promoted: ${same}`);
      return { promoted: false, production: current, reason: `worse ${same}` };
    }
    const production = await promote(store, manifest);
    log?.info({ version: manifest.version, ...comparison }, 'promoted to production');
    return { promoted: true, production, reason: `at least as good ${same}` };
  }
  if (current && current.valAccuracy > manifest.metrics.valAccuracy) {
    const reason = `validation accuracy ${manifest.metrics.valAccuracy.toFixed(4)} < production ${current.version} at ${current.valAccuracy.toFixed(4)}`;
    log?.info({ version: manifest.version, production: current.version }, `not promoted: ${reason}`);
    return { promoted: false, production: current, reason };
  }
  const production = await promote(store, manifest);
  log?.info({ version: manifest.version }, 'promoted to production');
  return { promoted: true, production, reason: current ? `≥ ${current.version} (${current.valAccuracy.toFixed(4)})` : 'first model' };
}

/** Announce a version on the models channel; cam-workers preload it. */
export async function announce(redis: Redis, prefix: string, event: { version: string; promoted: boolean }): Promise<void> {
  await redis.publish(modelChannel(prefix), JSON.stringify(event));
}
