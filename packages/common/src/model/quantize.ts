import type * as tf from '@tensorflow/tfjs';
import type { Int8Report } from './int8-report.js';
import { camForClass, minMaxNormalise, upsampleBilinear } from '../cam/cam.js';
import { iou, localize } from '../cam/localize.js';
import { InvalidParameterError } from '../errors.js';
import { exportOnnx, ONNX_INPUT, ONNX_PROBE } from './onnx-export.js';
import { OrtCamEngine } from './ort-engine.js';
import { CLASSIFIER_LAYER } from './presets.js';

export { int8ReportSchema, type Int8Report } from './int8-report.js';

/** A set of packed `size × size × 3` byte images. */
export interface PackedImages {
  images: Uint8Array;
  size: number;
}

const count = (p: PackedImages) => p.images.length / (p.size * p.size * 3);
const quantile = (xs: number[], q: number) => {
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.min(s.length - 1, Math.floor(q * s.length))]!;
};

function slices(p: PackedImages, limit: number): Uint8Array[] {
  const per = p.size * p.size * 3;
  const n = Math.min(count(p), limit);
  return Array.from({ length: n }, (_, i) => p.images.subarray(i * per, (i + 1) * per));
}

/**
 * The largest post-ReLU activation of every conv layer over the calibration images, from the float graph with
 * probe outputs (ONNX Runtime, CPU).
 */
export async function calibrateActivations(model: tf.LayersModel, calibration: PackedImages, options: { limit?: number; threads?: number } = {}): Promise<Record<string, number>> {
  const n = Math.min(count(calibration), options.limit ?? 512);
  if (!Number.isInteger(n) || n < 1) throw new InvalidParameterError('calibration.images', 'at least one packed image', count(calibration));
  const ort = await import('onnxruntime-node');
  const session = await ort.InferenceSession.create(exportOnnx(model, { probes: true }), { executionProviders: ['cpu'], intraOpNumThreads: options.threads ?? 0 });
  const per = calibration.size * calibration.size * 3;
  const maxima: Record<string, number> = {};
  try {
    for (let s = 0; s < n; s += 32) {
      const m = Math.min(32, n - s);
      const input = new ort.Tensor('uint8', calibration.images.subarray(s * per, (s + m) * per), [m, calibration.size, calibration.size, 3]);
      const out = await session.run({ [ONNX_INPUT]: input });
      for (const [name, value] of Object.entries(out)) {
        if (!name.startsWith(ONNX_PROBE)) continue;
        const layer = name.slice(ONNX_PROBE.length);
        let max = maxima[layer] ?? 0;
        for (const v of value.data as Float32Array) if (v > max) max = v;
        maxima[layer] = max;
      }
    }
  } finally {
    await session.release();
  }
  // A layer that never fired on the calibration set still needs a usable scale.
  for (const layer of Object.keys(maxima)) if (!(maxima[layer]! > 0)) maxima[layer] = 1e-3;
  return maxima;
}

/**
 * Build the int8 serving graph (see `exportOnnx`'s `int8`) calibrated on `calibration`, and measure it against
 * the float graph on `evaluation`: class agreement, box IoU and CAM differences.
 * @example const { bytes, report } = await buildInt8Graph(model, train, validation);
 */
export async function buildInt8Graph(model: tf.LayersModel, calibration: PackedImages, evaluation: PackedImages, options: { calibrationLimit?: number; evaluationLimit?: number; threads?: number } = {}): Promise<{ bytes: Uint8Array; report: Int8Report }> {
  const activationMax = await calibrateActivations(model, calibration, { limit: options.calibrationLimit ?? 512, ...(options.threads ? { threads: options.threads } : {}) });
  const bytes = exportOnnx(model, { int8: { activationMax } });
  const kernel = model.getLayer(CLASSIFIER_LAYER).getWeights()[0]!;
  const classifierWeights = kernel.dataSync() as Float32Array;
  const numClasses = kernel.shape[1]!;
  const size = evaluation.size;
  const engineOptions = { threads: options.threads ?? 0, providers: ['cpu'] };
  const [f32, i8] = await Promise.all([
    OrtCamEngine.create(exportOnnx(model), size, numClasses, classifierWeights, engineOptions),
    OrtCamEngine.create(bytes, size, numClasses, classifierWeights, engineOptions),
  ]);
  const images = slices(evaluation, options.evaluationLimit ?? 512);
  if (images.length === 0) throw new InvalidParameterError('evaluation.images', 'at least one packed image', 0);
  let agree = 0;
  const ious: number[] = [];
  const diffs: number[] = [];
  try {
    for (let s = 0; s < images.length; s += 32) {
      const batch = images.slice(s, s + 32);
      const [a, b] = [await f32.predict(batch), await i8.predict(batch)];
      a.forEach((pa, i) => {
        const pb = b[i]!;
        const ca = argmax(pa.logits);
        if (ca === argmax(pb.logits)) agree++;
        const { height, width } = pa.features;
        const ma = minMaxNormalise(upsampleBilinear(camForClass(pa.features, classifierWeights, numClasses, ca), height, width, size, size));
        const mb = minMaxNormalise(upsampleBilinear(camForClass(pb.features, classifierWeights, numClasses, ca), height, width, size, size));
        let d = 0;
        for (let j = 0; j < ma.length; j++) d = Math.max(d, Math.abs(ma[j]! - mb[j]!));
        diffs.push(d);
        const [ba, bb] = [localize(ma, size, size).box, localize(mb, size, size).box];
        ious.push(ba && bb ? iou(ba, bb) : ba === bb ? 1 : 0);
      });
    }
  } finally {
    f32.dispose();
    i8.dispose();
  }
  return {
    bytes,
    report: {
      calibrationImages: Math.min(count(calibration), options.calibrationLimit ?? 512),
      evaluatedImages: images.length,
      classAgreement: agree / images.length,
      boxIou: { median: quantile(ious, 0.5), p05: quantile(ious, 0.05), min: Math.min(...ious) },
      camMaxAbsDiff: { median: quantile(diffs, 0.5), p95: quantile(diffs, 0.95) },
      activationMax,
    },
  };
}

function argmax(xs: ArrayLike<number>): number {
  let best = 0;
  for (let i = 1; i < xs.length; i++) if (xs[i]! > xs[best]!) best = i;
  return best;
}
