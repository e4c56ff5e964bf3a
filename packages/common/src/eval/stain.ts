import { InvalidParameterError } from '../errors.js';
import { erodeSquare } from '../images/mask.js';
import type { Box } from '../cam/localize.js';

/**
 * Where a Giemsa-stained cell on black shows parasite chromatin, found from its pixels alone: a truth for the CAM's
 * pointing on data without boxes (the NIH crops). Chromatin is dark purple: within the cell, much less green than the
 * cell's own typical pixel while blue stays at least as strong as green (dark purple, not grey or brown debris).
 * The cell's rim is left out (its pixels are darkened by the fall-off into the black background).
 */
export interface StainOptions {
  /** A pixel belongs to the cell when a channel exceeds this level (the crops are cells on black). */
  cellLevel?: number;
  /** Rim width, as a share of the cell's longer side, left out of the search. */
  rim?: number;
  /** How far below the cell's median green a stain pixel is, at least (levels of 255). */
  minDrop?: number;
  /** …and at least this many median absolute deviations of the cell's green. */
  madFactor?: number;
  /** Smallest stain region kept, as a share of the cell's pixels. */
  minRegionShare?: number;
}

export interface StainResult {
  /** 1 where chromatin was found (`width × height`). */
  mask: Uint8Array;
  /** Bounding boxes of the stain regions kept, in image pixels. */
  boxes: Box[];
  cellPixels: number;
  stainPixels: number;
}

const median = (values: Uint8Array | number[], n: number): number => {
  const hist = new Uint32Array(256);
  for (let i = 0; i < n; i++) hist[values[i]!]!++;
  let seen = 0;
  for (let v = 0; v < 256; v++) {
    seen += hist[v]!;
    if (seen * 2 >= n) return v;
  }
  return 255;
};

/**
 * Find the stained chromatin of one cell crop (`rgb`: `width × height × 3` bytes).
 * @example const { boxes } = findStain(rgb, 130, 126);
 */
export function findStain(rgb: Uint8Array, width: number, height: number, options: StainOptions = {}): StainResult {
  if (rgb.length !== width * height * 3) throw new InvalidParameterError('rgb', `${width}×${height}×3 bytes`, rgb.length);
  const cellLevel = options.cellLevel ?? 16;
  const minDrop = options.minDrop ?? 30;
  const madFactor = options.madFactor ?? 4;
  const n = width * height;
  const cell = new Uint8Array(n);
  let cellPixels = 0;
  for (let i = 0; i < n; i++) {
    if (rgb[i * 3]! > cellLevel || rgb[i * 3 + 1]! > cellLevel || rgb[i * 3 + 2]! > cellLevel) {
      cell[i] = 1;
      cellPixels++;
    }
  }
  const mask = new Uint8Array(n);
  if (cellPixels === 0) return { mask, boxes: [], cellPixels, stainPixels: 0 };
  // Inner cell: at least `rim` from the background.
  const r = Math.max(1, Math.round((options.rim ?? 0.04) * Math.max(width, height)));
  const inner = erodeSquare(cell, width, height, r);
  const greens: number[] = [];
  for (let i = 0; i < n; i++) if (inner[i]) greens.push(rgb[i * 3 + 1]!);
  if (greens.length === 0) return { mask, boxes: [], cellPixels, stainPixels: 0 };
  const med = median(greens, greens.length);
  const deviations = greens.map((g) => Math.abs(g - med));
  const mad = median(deviations, deviations.length);
  const cut = med - Math.max(minDrop, madFactor * mad);
  for (let i = 0; i < n; i++) {
    if (!inner[i]) continue;
    const g = rgb[i * 3 + 1]!;
    if (g < cut && rgb[i * 3 + 2]! >= g) mask[i] = 1;
  }
  // Regions (8-connected); small ones are noise.
  const minArea = Math.max(3, Math.round((options.minRegionShare ?? 0.002) * cellPixels));
  const seen = new Uint8Array(n);
  const boxes: Box[] = [];
  let stainPixels = 0;
  const stack: number[] = [];
  for (let start = 0; start < n; start++) {
    if (!mask[start] || seen[start]) continue;
    const members: number[] = [];
    stack.push(start);
    seen[start] = 1;
    while (stack.length > 0) {
      const i = stack.pop()!;
      members.push(i);
      const x = i % width;
      const y = (i - x) / width;
      for (let dy = -1; dy <= 1; dy++) {
        for (let dx = -1; dx <= 1; dx++) {
          const xx = x + dx;
          const yy = y + dy;
          if (xx < 0 || yy < 0 || xx >= width || yy >= height) continue;
          const j = yy * width + xx;
          if (mask[j] && !seen[j]) {
            seen[j] = 1;
            stack.push(j);
          }
        }
      }
    }
    if (members.length < minArea) {
      for (const i of members) mask[i] = 0;
      continue;
    }
    let x0 = width;
    let y0 = height;
    let x1 = -1;
    let y1 = -1;
    for (const i of members) {
      const x = i % width;
      const y = (i - x) / width;
      if (x < x0) x0 = x;
      if (x > x1) x1 = x;
      if (y < y0) y0 = y;
      if (y > y1) y1 = y;
    }
    stainPixels += members.length;
    boxes.push({ x: x0, y: y0, width: x1 - x0 + 1, height: y1 - y0 + 1 });
  }
  return { mask, boxes, cellPixels, stainPixels };
}

/** The pointing game's tolerance (wsolevaluation: 15 px at 224 px), in pixels of an image of this size. */
export const pointingTolerance = (width: number, height: number): number => Math.round((15 / 224) * Math.max(width, height));

/** Whether a point lies within `tolerance` pixels (Chebyshev) of a stain pixel. */
export function hitsStain(mask: Uint8Array, width: number, height: number, point: { x: number; y: number }, tolerance: number): boolean {
  const px = Math.round(point.x);
  const py = Math.round(point.y);
  for (let y = Math.max(0, py - tolerance); y <= Math.min(height - 1, py + tolerance); y++) {
    for (let x = Math.max(0, px - tolerance); x <= Math.min(width - 1, px + tolerance); x++) if (mask[y * width + x]) return true;
  }
  return false;
}

/**
 * The pointing game's chance level for one cell: the share of the cell's pixels within `tolerance` of a stain pixel
 * (what a point drawn uniformly in the cell scores).
 */
export function chancePointing(rgb: Uint8Array, mask: Uint8Array, width: number, height: number, tolerance: number, cellLevel = 16): number {
  let cell = 0;
  let hits = 0;
  for (let y = 0; y < height; y++) {
    for (let x = 0; x < width; x++) {
      const i = y * width + x;
      if (!(rgb[i * 3]! > cellLevel || rgb[i * 3 + 1]! > cellLevel || rgb[i * 3 + 2]! > cellLevel)) continue;
      cell++;
      if (hitsStain(mask, width, height, { x, y }, tolerance)) hits++;
    }
  }
  return cell === 0 ? 0 : hits / cell;
}
