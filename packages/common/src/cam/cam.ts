import { InvalidParameterError } from '../errors.js';

/** A feature tensor of one image in channels-last layout (as TensorFlow.js produces it): `data[(y*width+x)*channels+k]`. */
export interface FeatureMap {
  data: Float32Array;
  height: number;
  width: number;
  channels: number;
}

/**
 * The class activation map of class `c`: `M_c(x, y) = Σ_k w_k^c f_k(x, y)`, at feature resolution. The bias of
 * the classifier is not part of the map (Zhou et al., 2016).
 *
 * `weights` is the dense layer's kernel as TensorFlow.js stores it: `[channels][classes]`, row-major.
 * @example const m = camForClass(features, kernel, 2, 0); // CAM of class 0
 */
export function camForClass(features: FeatureMap, weights: Float32Array, numClasses: number, classIndex: number): Float32Array {
  const { data, height, width, channels } = features;
  if (data.length !== height * width * channels) {
    throw new InvalidParameterError('features.data', `length ${height}×${width}×${channels}`, data.length);
  }
  if (weights.length !== channels * numClasses) {
    throw new InvalidParameterError('weights', `length channels×classes = ${channels * numClasses}`, weights.length);
  }
  if (!Number.isInteger(classIndex) || classIndex < 0 || classIndex >= numClasses) {
    throw new InvalidParameterError('classIndex', `an integer in [0, ${numClasses})`, classIndex);
  }
  const out = new Float32Array(height * width);
  for (let p = 0; p < out.length; p++) {
    let sum = 0;
    const base = p * channels;
    for (let k = 0; k < channels; k++) sum += weights[k * numClasses + classIndex]! * data[base + k]!;
    out[p] = sum;
  }
  return out;
}

/**
 * Bilinear resize of a single-channel map with half-pixel centres (the convention of OpenCV's and PIL's resize,
 * `align_corners=False`).
 * @example const big = upsampleBilinear(cam, 16, 16, 130, 142);
 */
export function upsampleBilinear(src: Float32Array, srcHeight: number, srcWidth: number, dstHeight: number, dstWidth: number): Float32Array {
  if (src.length !== srcHeight * srcWidth) throw new InvalidParameterError('src', `length ${srcHeight}×${srcWidth}`, src.length);
  if (!(dstHeight > 0 && dstWidth > 0 && Number.isInteger(dstHeight) && Number.isInteger(dstWidth))) {
    throw new InvalidParameterError('dst size', 'positive integers', [dstHeight, dstWidth]);
  }
  const out = new Float32Array(dstHeight * dstWidth);
  const scaleY = srcHeight / dstHeight;
  const scaleX = srcWidth / dstWidth;
  // Column taps are the same for every row: compute them once.
  const x0s = new Int32Array(dstWidth);
  const x1s = new Int32Array(dstWidth);
  const fxs = new Float32Array(dstWidth);
  for (let x = 0; x < dstWidth; x++) {
    const sx = Math.min(Math.max((x + 0.5) * scaleX - 0.5, 0), srcWidth - 1);
    const x0 = Math.floor(sx);
    x0s[x] = x0;
    x1s[x] = Math.min(x0 + 1, srcWidth - 1);
    fxs[x] = sx - x0;
  }
  for (let y = 0; y < dstHeight; y++) {
    const sy = Math.min(Math.max((y + 0.5) * scaleY - 0.5, 0), srcHeight - 1);
    const y0 = Math.floor(sy);
    const y1 = Math.min(y0 + 1, srcHeight - 1);
    const fy = sy - y0;
    const r0 = y0 * srcWidth;
    const r1 = y1 * srcWidth;
    const o = y * dstWidth;
    for (let x = 0; x < dstWidth; x++) {
      const a = src[r0 + x0s[x]!]!;
      const b = src[r0 + x1s[x]!]!;
      const c = src[r1 + x0s[x]!]!;
      const d = src[r1 + x1s[x]!]!;
      const fx = fxs[x]!;
      const top = a + (b - a) * fx;
      const bottom = c + (d - c) * fx;
      out[o + x] = top + (bottom - top) * fy;
    }
  }
  return out;
}

/**
 * Min-max normalise to [0, 1]. A constant map becomes all zeros (there is no evidence anywhere).
 * Writes into `out` when given (may be `map` itself).
 */
export function minMaxNormalise(map: Float32Array, out: Float32Array = new Float32Array(map.length)): Float32Array {
  let min = Infinity;
  let max = -Infinity;
  for (let i = 0; i < map.length; i++) {
    const v = map[i]!;
    if (v < min) min = v;
    if (v > max) max = v;
  }
  const range = max - min;
  if (!(range > 0)) {
    out.fill(0);
    return out;
  }
  const inv = 1 / range;
  for (let i = 0; i < map.length; i++) out[i] = (map[i]! - min) * inv;
  return out;
}

/** Index of the maximum value (first one on ties) and its (x, y) position in a row-major map. */
export function argmax2d(map: Float32Array, width: number): { index: number; x: number; y: number; value: number } {
  let best = 0;
  for (let i = 1; i < map.length; i++) if (map[i]! > map[best]!) best = i;
  return { index: best, x: best % width, y: Math.floor(best / width), value: map[best]! };
}

/** Softmax of a logits vector. */
export function softmax(logits: ArrayLike<number>): number[] {
  let max = -Infinity;
  for (let i = 0; i < logits.length; i++) max = Math.max(max, logits[i]!);
  const exps = Array.from({ length: logits.length }, (_, i) => Math.exp(logits[i]! - max));
  const sum = exps.reduce((a, b) => a + b, 0);
  return exps.map((e) => e / sum);
}
