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
  checkSize(dstHeight, dstWidth);
  const out = new Float32Array(dstHeight * dstWidth);
  upsampleInto(src, srcHeight, srcWidth, dstHeight, dstWidth, out);
  return out;
}

function checkSize(height: number, width: number): void {
  if (!(height > 0 && width > 0 && Number.isInteger(height) && Number.isInteger(width))) {
    throw new InvalidParameterError('dst size', 'positive integers', [height, width]);
  }
}

/**
 * The bilinear resize into `out`, returning the minimum and maximum written. Each source row is interpolated along
 * x once per output column (in double precision, with float32 fractions), so an output pixel costs one
 * interpolation along y.
 */
function upsampleInto(src: Float32Array, srcHeight: number, srcWidth: number, height: number, width: number, out: Float32Array): { min: number; max: number } {
  const rows = new Float64Array(srcHeight * width);
  const scaleX = srcWidth / width;
  for (let x = 0; x < width; x++) {
    const sx = Math.min(Math.max((x + 0.5) * scaleX - 0.5, 0), srcWidth - 1);
    const x0 = Math.floor(sx);
    const x1 = Math.min(x0 + 1, srcWidth - 1);
    const fx = Math.fround(sx - x0);
    for (let r = 0; r < srcHeight; r++) {
      const a = src[r * srcWidth + x0]!;
      rows[r * width + x] = a + (src[r * srcWidth + x1]! - a) * fx;
    }
  }
  const scaleY = srcHeight / height;
  let min = Infinity;
  let max = -Infinity;
  for (let y = 0; y < height; y++) {
    const sy = Math.min(Math.max((y + 0.5) * scaleY - 0.5, 0), srcHeight - 1);
    const y0 = Math.floor(sy);
    const r0 = y0 * width;
    const r1 = Math.min(y0 + 1, srcHeight - 1) * width;
    const fy = sy - y0;
    const o = y * width;
    for (let x = 0; x < width; x++) {
      const top = rows[r0 + x]!;
      const v = Math.fround(top + (rows[r1 + x]! - top) * fy);
      out[o + x] = v;
      if (v < min) min = v;
      if (v > max) max = v;
    }
  }
  return { min, max };
}

/**
 * The normalised CAM at an image's size: `minMaxNormalise(upsampleBilinear(cam, …))`, then — with a `mask` — the
 * same as `restrictToMask` (zero outside, renormalised to [0, 1] inside), and the map's peak (first index of its
 * maximum) and maximum. The same float32 values as those functions composed, in two passes over the output instead
 * of six (the upsampling shared with `upsampleBilinear`, which takes the minimum and maximum as it writes).
 * @example const { map, peak } = camAtSize(cam, 16, 16, 130, 142, foreground);
 */
export function camAtSize(cam: Float32Array, srcHeight: number, srcWidth: number, height: number, width: number, mask?: Uint8Array): { map: Float32Array; peak: number; max: number } {
  if (cam.length !== srcHeight * srcWidth) throw new InvalidParameterError('cam', `length ${srcHeight}×${srcWidth}`, cam.length);
  checkSize(height, width);
  if (mask && mask.length !== height * width) throw new InvalidParameterError('mask', `${height * width} pixels`, mask.length);
  const map = new Float32Array(height * width);
  const { min, max } = upsampleInto(cam, srcHeight, srcWidth, height, width, map);
  const range = max - min;
  if (!(range > 0)) {
    map.fill(0);
    return { map, peak: 0, max: 0 };
  }
  const inv = 1 / range;
  let top = -Infinity;
  let peak = 0;
  const n = map.length;
  if (!mask) {
    for (let i = 0; i < n; i++) {
      const v = Math.fround((map[i]! - min) * inv);
      map[i] = v;
      if (v > top) {
        top = v;
        peak = i;
      }
    }
    return { map, peak, max: top };
  }
  top = 0;
  for (let i = 0; i < n; i++) {
    if (!mask[i]) {
      map[i] = 0;
      continue;
    }
    const v = Math.fround((map[i]! - min) * inv);
    map[i] = v;
    if (v > top) {
      top = v;
      peak = i;
    }
  }
  if (!(top > 0 && top < 1)) return { map, peak, max: top };
  // Renormalised inside the mask (restrictToMask's division); ties may appear, so the peak is found again.
  let renormalised = -Infinity;
  for (let i = 0; i < n; i++) {
    const v = Math.fround(map[i]! / top);
    map[i] = v;
    if (v > renormalised) {
      renormalised = v;
      peak = i;
    }
  }
  return { map, peak, max: renormalised };
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
