import * as tf from '@tensorflow/tfjs';
import { CamflowError } from '../errors.js';

/** A layers model as two files: `model.json` (topology + weight manifest) and `weights.bin`. */
export interface ModelFiles {
  modelJson: { modelTopology: unknown; format: string; generatedBy: string; weightsManifest: { paths: string[]; weights: tf.io.WeightsManifestEntry[] }[] };
  weights: Uint8Array;
}

/** Serialise a layers model to the standard TensorFlow.js files (loadable by `tf.loadLayersModel`). */
export async function serializeModel(model: tf.LayersModel): Promise<ModelFiles> {
  let artifacts: tf.io.ModelArtifacts | undefined;
  await model.save(
    tf.io.withSaveHandler(async (a) => {
      artifacts = a;
      return { modelArtifactsInfo: { dateSaved: new Date(), modelTopologyType: 'JSON' } };
    }),
  );
  if (!artifacts?.weightData || !artifacts.weightSpecs) throw new CamflowError('MODEL', 'model has no weights to save');
  const joined = tf.io.CompositeArrayBuffer.join(artifacts.weightData);
  return {
    modelJson: {
      modelTopology: artifacts.modelTopology,
      format: 'layers-model',
      generatedBy: `TensorFlow.js tfjs-layers v${tf.version_layers}`,
      weightsManifest: [{ paths: ['weights.bin'], weights: artifacts.weightSpecs }],
    },
    weights: new Uint8Array(joined),
  };
}

/** Load a layers model from its two files. */
export async function deserializeModel(files: ModelFiles): Promise<tf.LayersModel> {
  const w = files.weights;
  const buffer = w.buffer.slice(w.byteOffset, w.byteOffset + w.byteLength) as ArrayBuffer;
  return tf.loadLayersModel(
    tf.io.fromMemory({
      modelTopology: files.modelJson.modelTopology as tf.io.ModelJSON['modelTopology'],
      weightSpecs: files.modelJson.weightsManifest.flatMap((m) => m.weights),
      weightData: buffer,
    }),
  );
}
