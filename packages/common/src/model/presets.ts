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

/** PyTorch's default initialisation of a layer with `fanIn` inputs per output: weights and biases uniform in ±1/√fanIn. */
function torchDefault(fanIn: number, seed: number) {
  const limit = 1 / Math.sqrt(fanIn);
  return {
    kernelInitializer: tf.initializers.varianceScaling({ scale: 1 / 3, mode: 'fanIn', distribution: 'uniform', seed }),
    biasInitializer: tf.initializers.randomUniform({ minval: -limit, maxval: limit, seed: seed + 50_000 }),
  };
}

interface ConvOptions {
  name?: string;
  inputShape?: number[];
  /** PyTorch's default initialisation (the seed's) for a layer with this many input channels; absent: He-normal, zero bias. */
  torchInChannels?: number;
}

function conv(filters: number, kernelSize: number, padding: 'valid' | 'same', seed: number, o: ConvOptions = {}) {
  return tf.layers.conv2d({
    filters,
    kernelSize,
    padding,
    activation: 'relu',
    ...(o.torchInChannels
      ? torchDefault(o.torchInChannels * kernelSize * kernelSize, seed)
      : { kernelInitializer: tf.initializers.heNormal({ seed }), biasInitializer: 'zeros' }),
    ...(o.name ? { name: o.name } : {}),
    ...(o.inputShape ? { inputShape: o.inputShape } : {}),
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
    // The seed's layers with the seed's (PyTorch's default) initialisation. He-normal weights with the 2-channel ReLU
    // head's biases at 0.1 died at epoch 1 in 4 of 4 attempts on the NIH dev cells (lr 0.002: both maps negative
    // everywhere, no gradient); PyTorch's smaller ±1/√fan-in weights keep the head alive until the net learns.
    model.add(conv(16, 5, 'valid', k++, { inputShape: [s, s, 3], torchInChannels: 3 }));
    model.add(conv(32, 5, 'valid', k++, { torchInChannels: 16 }));
    model.add(tf.layers.maxPooling2d({ poolSize: 2 }));
    model.add(conv(32, 5, 'valid', k++, { torchInChannels: 32 }));
    model.add(conv(32, 5, 'valid', k++, { torchInChannels: 32 }));
    model.add(tf.layers.maxPooling2d({ poolSize: 2 }));
    model.add(conv(32, 5, 'valid', k++, { torchInChannels: 32 }));
    model.add(conv(2, 5, 'valid', k++, { name: FEATURES_LAYER, torchInChannels: 32 }));
  } else {
    // Centre the input on zero inside the model (both engines then see the same graph): from an all-positive
    // input the first convolutions mostly learn brightness, and the small net sits on a plateau for epochs.
    model.add(tf.layers.rescaling({ scale: 2, offset: -1, inputShape: [s, s, 3] }));
    model.add(conv(16, 3, 'same', k++));
    model.add(tf.layers.maxPooling2d({ poolSize: 2 }));
    model.add(conv(32, 3, 'same', k++));
    model.add(tf.layers.maxPooling2d({ poolSize: 2 }));
    model.add(conv(32, 3, 'same', k++));
    model.add(conv(32, 3, 'same', k++, { name: FEATURES_LAYER }));
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
