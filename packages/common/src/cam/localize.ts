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

/** Binary mask of the pixels strictly above `fraction × max(map)` (the paper uses 0.2). */
export function thresholdMask(map: Float32Array, fraction: number, out: Uint8Array = new Uint8Array(map.length)): Uint8Array {
  if (!(fraction >= 0 && fraction < 1)) throw new InvalidParameterError('fraction', 'a number in [0, 1)', fraction);
  let max = -Infinity;
  for (let i = 0; i < map.length; i++) if (map[i]! > max) max = map[i]!;
  // Compare in float32, the precision of the map itself.
  const cut = Math.fround(fraction * max);
  for (let i = 0; i < map.length; i++) out[i] = map[i]! > cut ? 1 : 0;
  // A map that is zero everywhere has no region at all.
  if (!(max > 0)) out.fill(0);
  return out;
}

/**
 * 8-connected components of a binary mask, with each component's bounding box and the mean and peak of `values`
 * over its pixels. Components are returned largest first (ties: first found in raster order).
 * @example const regions = connectedRegions(mask, values, 128, 128);
 */
export function connectedRegions(mask: Uint8Array, values: Float32Array, width: number, height: number): Region[] {
  if (mask.length !== width * height) throw new InvalidParameterError('mask', `length ${width}×${height}`, mask.length);
  if (values.length !== mask.length) throw new InvalidParameterError('values', `length ${mask.length}`, values.length);
  const seen = new Uint8Array(mask.length);
  const stack = new Int32Array(mask.length);
  const regions: Region[] = [];
  for (let start = 0; start < mask.length; start++) {
    if (mask[start] === 0 || seen[start] === 1) continue;
    let top = 0;
    stack[top++] = start;
    seen[start] = 1;
    let x0 = width;
    let y0 = height;
    let x1 = -1;
    let y1 = -1;
    let area = 0;
    let sum = 0;
    let peak = -Infinity;
    while (top > 0) {
      const p = stack[--top]!;
      const px = p % width;
      const py = (p - px) / width;
      area++;
      const v = values[p]!;
      sum += v;
      if (v > peak) peak = v;
      if (px < x0) x0 = px;
      if (px > x1) x1 = px;
      if (py < y0) y0 = py;
      if (py > y1) y1 = py;
      for (let dy = -1; dy <= 1; dy++) {
        const ny = py + dy;
        if (ny < 0 || ny >= height) continue;
        for (let dx = -1; dx <= 1; dx++) {
          const nx = px + dx;
          if (nx < 0 || nx >= width || (dx === 0 && dy === 0)) continue;
          const q = ny * width + nx;
          if (mask[q] === 1 && seen[q] === 0) {
            seen[q] = 1;
            stack[top++] = q;
          }
        }
      }
    }
    regions.push({ x: x0, y: y0, width: x1 - x0 + 1, height: y1 - y0 + 1, area, score: sum / area, peak });
  }
  // Stable sort keeps raster order among equal areas.
  return regions.sort((a, b) => b.area - a.area);
}

export interface LocalizeOptions {
  /** Keep pixels above this fraction of the maximum (paper: 0.2). */
  fraction?: number;
  /** Minimum component area, in pixels, for the `regions` list (the largest is always reported). */
  minArea?: number;
}

/**
 * The paper's weakly supervised localization on a (normalised, full-resolution) CAM: threshold at
 * `fraction × max`, 8-connected components, the largest component's bounding box. Also returns every component
 * of at least `minArea` pixels with its score.
 */
export function localize(map: Float32Array, width: number, height: number, options: LocalizeOptions = {}): { box: Region | null; regions: Region[] } {
  const fraction = options.fraction ?? 0.2;
  const minArea = options.minArea ?? 1;
  const mask = thresholdMask(map, fraction);
  const regions = connectedRegions(mask, map, width, height);
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
