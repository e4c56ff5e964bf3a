import { InvalidParameterError } from '../errors.js';

/** A box in pixel coordinates: `x`,`y` the top-left pixel, `width`,`height` in pixels (x + width is exclusive). */
export interface Box {
  x: number;
  y: number;
  width: number;
  height: number;
}

/** A connected region of the thresholded CAM with its bounding box and evidence. */
export interface Region extends Box {
  /** Pixels in the component. */
  area: number;
  /** Mean normalised CAM value over the component's pixels, in [0, 1]. */
  score: number;
  /** Highest normalised CAM value in the component. */
  peak: number;
}

/**
 * Binary mask of the pixels strictly above `fraction × max(map)` (the paper uses 0.2). `knownMax`, when the caller
 * has it (`camAtSize` returns it), saves the pass that finds it; it must be the map's maximum.
 */
export function thresholdMask(map: Float32Array, fraction: number, out: Uint8Array = new Uint8Array(map.length), knownMax?: number): Uint8Array {
  const cut = thresholdCut(map, fraction, knownMax);
  if (cut === undefined) return out.fill(0);
  for (let i = 0; i < map.length; i++) out[i] = map[i]! > cut ? 1 : 0;
  return out;
}

/**
 * The value a pixel must exceed: `fraction × max`, in float32 (the map's precision); undefined when the map's
 * maximum is not positive (a map that is zero everywhere has no region at all).
 */
function thresholdCut(map: Float32Array, fraction: number, knownMax?: number): number | undefined {
  if (!(fraction >= 0 && fraction < 1)) throw new InvalidParameterError('fraction', 'a number in [0, 1)', fraction);
  let max = knownMax ?? -Infinity;
  if (knownMax === undefined) for (let i = 0; i < map.length; i++) if (map[i]! > max) max = map[i]!;
  return max > 0 ? Math.fround(fraction * max) : undefined;
}

/**
 * 8-connected components of a binary mask, with each component's bounding box and the mean and peak of `values`
 * over its pixels. Components are returned largest first (ties: first found in raster order).
 *
 * Run-based labelling: each row's runs of set pixels are unioned with the runs of the row above that touch them
 * (8-connectivity: overlapping once widened by one pixel). Work is one pass over the pixels plus one per run,
 * with no per-pixel allocation.
 * @example const regions = connectedRegions(mask, values, 128, 128);
 */
export function connectedRegions(mask: Uint8Array, values: Float32Array, width: number, height: number): Region[] {
  if (mask.length !== width * height) throw new InvalidParameterError('mask', `length ${width}×${height}`, mask.length);
  if (values.length !== mask.length) throw new InvalidParameterError('values', `length ${mask.length}`, values.length);
  return regionsOf(mask, 0, values, width, height);
}

/**
 * The components of the pixels where `test[i] > cut`, scored by `values` (the same array for a CAM thresholded on
 * itself: one pass over the map finds the runs and sums them; no mask is written).
 */
function regionsOf(test: Uint8Array | Float32Array, cut: number, values: Float32Array, width: number, height: number): Region[] {
  let capacity = 64;
  let runY = new Int32Array(capacity);
  let runX0 = new Int32Array(capacity);
  let runX1 = new Int32Array(capacity);
  let parent = new Int32Array(capacity);
  let runSum = new Float64Array(capacity);
  let runPeak = new Float64Array(capacity);
  let n = 0;
  const find = (r: number): number => {
    while (parent[r] !== r) {
      parent[r] = parent[parent[r]!]!;
      r = parent[r]!;
    }
    return r;
  };
  let prevStart = 0;
  let prevEnd = 0;
  for (let y = 0; y < height; y++) {
    const rowStart = n;
    const base = y * width;
    let p = prevStart;
    let x = 0;
    while (x < width) {
      if (!(test[base + x]! > cut)) {
        x++;
        continue;
      }
      const x0 = x;
      let sum = 0;
      let peak = -Infinity;
      while (x < width && test[base + x]! > cut) {
        const v = values[base + x]!;
        sum += v;
        if (v > peak) peak = v;
        x++;
      }
      const x1 = x - 1;
      if (n === capacity) {
        capacity *= 2;
        const grow = <T extends Int32Array | Float64Array>(a: T): T => {
          const b = new (a.constructor as new (n: number) => T)(capacity);
          b.set(a);
          return b;
        };
        runY = grow(runY);
        runX0 = grow(runX0);
        runX1 = grow(runX1);
        parent = grow(parent);
        runSum = grow(runSum);
        runPeak = grow(runPeak);
      }
      runY[n] = y;
      runX0[n] = x0;
      runX1[n] = x1;
      runSum[n] = sum;
      runPeak[n] = peak;
      parent[n] = n;
      // Runs of the previous row that end before x0 - 1 touch neither this run nor any later one.
      while (p < prevEnd && runX1[p]! < x0 - 1) p++;
      for (let q = p; q < prevEnd && runX0[q]! <= x1 + 1; q++) {
        const a = find(q);
        const b = find(n);
        if (a !== b) parent[Math.max(a, b)] = Math.min(a, b);
      }
      n++;
    }
    prevStart = rowStart;
    prevEnd = n;
  }
  // Gather per root, numbering components in raster order of their first run.
  const index = new Int32Array(n).fill(-1);
  const regions: (Region & { x1: number; y1: number; sum: number })[] = [];
  for (let r = 0; r < n; r++) {
    const root = find(r);
    let c = index[root]!;
    if (c < 0) {
      c = index[root] = regions.length;
      regions.push({ x: width, y: height, x1: -1, y1: -1, width: 0, height: 0, area: 0, score: 0, peak: -Infinity, sum: 0 });
    }
    const reg = regions[c]!;
    const y = runY[r]!;
    const x0 = runX0[r]!;
    const x1 = runX1[r]!;
    if (x0 < reg.x) reg.x = x0;
    if (x1 > reg.x1) reg.x1 = x1;
    if (y < reg.y) reg.y = y;
    if (y > reg.y1) reg.y1 = y;
    reg.area += x1 - x0 + 1;
    reg.sum += runSum[r]!;
    if (runPeak[r]! > reg.peak) reg.peak = runPeak[r]!;
  }
  const out: Region[] = regions.map((r) => ({ x: r.x, y: r.y, width: r.x1 - r.x + 1, height: r.y1 - r.y + 1, area: r.area, score: r.sum / r.area, peak: r.peak }));
  // Stable sort keeps raster order among equal areas.
  return out.sort((a, b) => b.area - a.area);
}

export interface LocalizeOptions {
  /** Keep pixels above this fraction of the maximum (paper: 0.2). */
  fraction?: number;
  /** Minimum component area, in pixels, for the `regions` list (the largest is always reported). */
  minArea?: number;
  /** The map's maximum, when known (`camAtSize`): saves a pass. */
  max?: number;
}

/**
 * The paper's weakly supervised localization on a (normalised, full-resolution) CAM: threshold at
 * `fraction × max`, 8-connected components, the largest component's bounding box. Also returns every component
 * of at least `minArea` pixels with its score.
 */
export function localize(map: Float32Array, width: number, height: number, options: LocalizeOptions = {}): { box: Region | null; regions: Region[] } {
  const fraction = options.fraction ?? 0.2;
  const minArea = options.minArea ?? 1;
  if (map.length !== width * height) throw new InvalidParameterError('map', `length ${width}×${height}`, map.length);
  // thresholdMask's rule, read straight off the map while its runs are found.
  const cut = thresholdCut(map, fraction, options.max);
  const regions = cut === undefined ? [] : regionsOf(map, cut, map, width, height);
  return { box: regions[0] ?? null, regions: regions.filter((r) => r.area >= minArea) };
}

/** Intersection over union of two pixel boxes (x + width exclusive). */
export function iou(a: Box, b: Box): number {
  const ix = Math.max(0, Math.min(a.x + a.width, b.x + b.width) - Math.max(a.x, b.x));
  const iy = Math.max(0, Math.min(a.y + a.height, b.y + b.height) - Math.max(a.y, b.y));
  const inter = ix * iy;
  const union = a.width * a.height + b.width * b.height - inter;
  return union > 0 ? inter / union : 0;
}

/** Scale a box from one image size to another (e.g. model input → original pixels), rounding outwards. */
export function scaleBox<T extends Box>(box: T, fromWidth: number, fromHeight: number, toWidth: number, toHeight: number): T {
  const sx = toWidth / fromWidth;
  const sy = toHeight / fromHeight;
  const x0 = Math.floor(box.x * sx);
  const y0 = Math.floor(box.y * sy);
  const x1 = Math.min(toWidth, Math.ceil((box.x + box.width) * sx));
  const y1 = Math.min(toHeight, Math.ceil((box.y + box.height) * sy));
  return { ...box, x: x0, y: y0, width: x1 - x0, height: y1 - y0 };
}
