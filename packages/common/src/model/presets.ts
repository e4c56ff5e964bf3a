import * as tf from '@tensorflow/tfjs';
import type { PresetName } from '../queues/schemas.js';

/** Layer names the CAM relies on. */
export const FEATURES_LAYER = 'features';
export const CLASSIFIER_LAYER = 'classifier';

export interface PresetSpec {
  name: PresetName;
  inputSize: number;
  /** Human description for manifests and the README. */
  description: string;
}

export const presets: Record<PresetName, PresetSpec> = {
  seed: {
    name: 'seed',
    inputSize: 128,
    description:
      'The seed network: conv 3→16→32 (5×5) pool, conv 32→32→32 pool, conv 32→32→2, valid padding, 18×18×2 features, true GAP, dense 2→2',
  },
  fast: {
    name: 'fast',
    inputSize: 64,
    description: 'CPU preset: conv 3→16 pool, conv 16→32 pool, conv 32→32→32 (3×3 same), 16×16×32 features, GAP, dense 32→classes',
  },
};

function conv(filters: number, kernelSize: number, padding: 'valid' | 'same', seed: number, name?: string, inputShape?: number[], bias = 0) {
  return tf.layers.conv2d({
    filters,
    kernelSize,
    padding,
    activation: 'relu',
    kernelInitializer: tf.initializers.heNormal({ seed }),
    biasInitializer: bias === 0 ? 'zeros' : tf.initializers.constant({ value: bias }),
    ...(name ? { name } : {}),
    ...(inputShape ? { inputShape } : {}),
  });
}

/**
 * Build a GAP-CNN: convolutions → last conv (`features`) → global average pooling → one dense layer
 * (`classifier`, no activation: logits). That structure is what makes `M_c = Σ_k w_k^c f_k` the class map.
 *
 * The seed's `AvgPool2d(16)` on its 18×18 map only averages the top-left 16×16 window; here pooling is the
 * paper's true global average.
 * @example const model = buildModel('seed', 2, 7);
 */
export function buildModel(preset: PresetName, numClasses: number, seed = 0): tf.LayersModel {
  const s = presets[preset].inputSize;
  const model = tf.sequential({ name: `camflow_${preset}` });
  let k = seed * 101;
  if (preset === 'seed') {
    model.add(conv(16, 5, 'valid', k++, undefined, [s, s, 3]));
    model.add(conv(32, 5, 'valid', k++));
    model.add(tf.layers.maxPooling2d({ poolSize: 2 }));
    model.add(conv(32, 5, 'valid', k++));
    model.add(conv(32, 5, 'valid', k++));
    model.add(tf.layers.maxPooling2d({ poolSize: 2 }));
    model.add(conv(32, 5, 'valid', k++));
    // The seed's 2-channel ReLU head dies easily (both maps negative everywhere → no gradient, chance accuracy).
    // Starting its biases slightly positive keeps the ReLUs open during the first steps; the layers are the seed's.
    model.add(conv(2, 5, 'valid', k++, FEATURES_LAYER, undefined, 0.1));
  } else {
    // Centre the input on zero inside the model (both engines then see the same graph): from an all-positive
    // input the first convolutions mostly learn brightness, and the small net sits on a plateau for epochs.
    model.add(tf.layers.rescaling({ scale: 2, offset: -1, inputShape: [s, s, 3] }));
    model.add(conv(16, 3, 'same', k++));
    model.add(tf.layers.maxPooling2d({ poolSize: 2 }));
    model.add(conv(32, 3, 'same', k++));
    model.add(tf.layers.maxPooling2d({ poolSize: 2 }));
    model.add(conv(32, 3, 'same', k++));
    model.add(conv(32, 3, 'same', k++, FEATURES_LAYER));
  }
  model.add(tf.layers.globalAveragePooling2d({ dataFormat: 'channelsLast' }));
  model.add(tf.layers.dense({ units: numClasses, name: CLASSIFIER_LAYER, kernelInitializer: tf.initializers.glorotUniform({ seed: k++ }) }));
  return model;
}

/** Multiply-accumulates per image of a model's conv and dense layers (a FLOP is two of them). */
export function macsPerImage(model: tf.LayersModel): number {
  let macs = 0;
  for (const layer of model.layers) {
    const cls = layer.getClassName();
    const out = layer.outputShape as number[];
    if (cls === 'Conv2D') {
      const kernel = layer.getWeights()[0]!.shape as number[];
      macs += out[1]! * out[2]! * out[3]! * kernel[0]! * kernel[1]! * kernel[2]!;
    } else if (cls === 'Dense') {
      const kernel = layer.getWeights()[0]!.shape as number[];
      macs += kernel[0]! * kernel[1]!;
    }
  }
  return macs;
}
