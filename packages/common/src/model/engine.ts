import * as tf from '@tensorflow/tfjs';
import { InvalidParameterError } from '../errors.js';
import type { FeatureMap } from '../cam/cam.js';
import { CLASSIFIER_LAYER, FEATURES_LAYER } from './presets.js';

/** What a model says about one image: logits and the last conv layer's features (channels-last). */
export interface Prediction {
  logits: Float32Array;
  features: FeatureMap;
}

/**
 * An inference engine for CAM: runs a batch of preprocessed images and returns logits and last-conv features.
 * The CAM itself is pure maths over `features` and `classifierWeights` (see `cam/cam.ts`).
 */
export interface CamEngine {
  readonly name: string;
  /** What computes: `onnxruntime/webgpu`, `onnxruntime/cpu`, `tfjs/wasm`… (each result's `engine`). */
  readonly device: string;
  /** Images per inference run that suit the device (GPU providers: hundreds; CPU: tens). `CAM_INFER_BATCH` overrides. */
  readonly preferredBatch: number;
  readonly inputSize: number;
  readonly numClasses: number;
  /** The dense layer's kernel, `[channels][classes]` row-major. */
  readonly classifierWeights: Float32Array;
  predict(inputs: Uint8Array[]): Promise<Prediction[]>;
  dispose(): void;
}

/** Pack `size × size × 3` byte images into a float NHWC tensor scaled to [0, 1] (the seed's `/255`). */
export function toInputTensor(inputs: Uint8Array[], size: number): tf.Tensor4D {
  const per = size * size * 3;
  const data = new Float32Array(inputs.length * per);
  inputs.forEach((img, i) => {
    if (img.length !== per) throw new InvalidParameterError(`inputs[${i}]`, `${size}×${size}×3 = ${per} bytes`, img.length);
    const o = i * per;
    for (let j = 0; j < per; j++) data[o + j] = img[j]! / 255;
  });
  return tf.tensor4d(data, [inputs.length, size, size, 3]);
}

/** CAM engine on TensorFlow.js (whatever backend the ladder chose). */
export class TfjsCamEngine implements CamEngine {
  readonly name = 'tfjs';
  readonly device = `tfjs/${tf.getBackend()}`;
  readonly preferredBatch = tf.getBackend() === 'webgpu' ? 256 : 32;
  readonly inputSize: number;
  readonly numClasses: number;
  readonly classifierWeights: Float32Array;
  private readonly twoHeads: tf.LayersModel;

  constructor(readonly model: tf.LayersModel) {
    const shape = model.inputs[0]!.shape;
    this.inputSize = shape[1]!;
    const features = model.getLayer(FEATURES_LAYER);
    const classifier = model.getLayer(CLASSIFIER_LAYER);
    const kernel = classifier.getWeights()[0]!;
    this.numClasses = kernel.shape[1]!;
    this.classifierWeights = kernel.dataSync() as Float32Array;
    this.twoHeads = tf.model({ inputs: model.inputs, outputs: [features.output as tf.SymbolicTensor, model.outputs[0]!] });
  }

  async predict(inputs: Uint8Array[]): Promise<Prediction[]> {
    if (inputs.length === 0) return [];
    const x = toInputTensor(inputs, this.inputSize);
    const [f, l] = this.twoHeads.predict(x) as tf.Tensor[];
    x.dispose();
    const [fd, ld] = await Promise.all([f!.data(), l!.data()]);
    const [, h, w, k] = f!.shape as number[];
    f!.dispose();
    l!.dispose();
    const per = h! * w! * k!;
    return inputs.map((_, i) => ({
      logits: (ld as Float32Array).slice(i * this.numClasses, (i + 1) * this.numClasses),
      features: { data: (fd as Float32Array).slice(i * per, (i + 1) * per), height: h!, width: w!, channels: k! },
    }));
  }

  dispose(): void {
    this.model.dispose();
  }
}
