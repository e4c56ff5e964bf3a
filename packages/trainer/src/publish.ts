import { Redis } from 'ioredis';
import {
  exportOnnx,
  getProduction,
  keys,
  modelChannel,
  promote,
  serializeModel,
  tf,
  type Logger,
  type ModelManifest,
  type ObjectStore,
  type ProductionChannel,
} from '@camflow/common';

/**
 * Publish a model version: weights and topology first, the manifest last (the commit point: a crash before it
 * leaves no visible version).
 */
export async function publishModel(store: ObjectStore, model: tf.LayersModel, manifest: Omit<ModelManifest, 'files'>): Promise<ModelManifest> {
  const files = await serializeModel(model);
  await store.put(keys.modelFile(manifest.version, 'weights.bin'), files.weights);
  await store.putJson(keys.modelFile(manifest.version, 'model.json'), files.modelJson);
  // The serving graph for ONNX Runtime: logits and channels-last features.
  await store.put(keys.modelFile(manifest.version, 'model.onnx'), exportOnnx(model));
  const full: ModelManifest = { ...manifest, files: ['model.json', 'weights.bin', 'model.onnx'] };
  await store.putJson(keys.modelFile(manifest.version, 'manifest.json'), full);
  return full;
}

/** Promotion gate: at least as good as production on validation accuracy. */
export async function promoteIfBetter(store: ObjectStore, manifest: ModelManifest, log?: Logger): Promise<{ promoted: boolean; production?: ProductionChannel; reason: string }> {
  const current = await getProduction(store);
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
