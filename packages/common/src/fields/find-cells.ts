import { InvalidParameterError } from '../errors.js';
import { erodeSquare, fillMaskHoles, keepLargestPiece } from '../images/mask.js';
import type { Box } from '../cam/localize.js';
import { loadOpenCv, type OpenCv } from './opencv.js';

/**
 * Red cells in a thin-smear field photograph: the field of view (the eyepiece's round window, when the photo has
 * one), cells against the plasma background, touching cells split, fragments and clumps dropped by size.
 *
 * Method (OpenCV, at a working scale where a cell is ~32 px across):
 * 1. field of view: the largest bright region (a phone on the eyepiece leaves the outside black);
 * 2. cells: Otsu's threshold on the green channel inside the field of view (haemoglobin and the stain absorb green;
 *    plasma does not), specks opened away, holes up to a pale centre's size filled;
 * 3. touching cells: one marker per local maximum of the distance transform, then watershed;
 * 4. size: regions whose equivalent diameter lies outside `diameter × [0.55, 1.6]` are fragments, platelets or clumps.
 */
export interface FindCellsOptions {
  /** Typical red-cell diameter in field pixels (default: estimated from the field). */
  diameter?: number;
  /** Accepted equivalent diameters, as multiples of `diameter`. */
  sizeRange?: [number, number];
}

export interface FoundCell {
  /** Bounding box in field pixels. */
  box: Box;
  /** Outline in field pixels (closed; the last point joins the first). */
  polygon: [number, number][];
  /** Pixels of the cell, in field pixels. */
  area: number;
  centroid: { x: number; y: number };
  /** Touches the image's edge or the field of view's edge (part of the cell may be missing). */
  clipped: boolean;
  /** The smallest circle around the outline, field pixels: where the cell's disc is, under a neighbour lying on it. */
  circle: { cx: number; cy: number; r: number };
  /** Mean RGB of the cell's pixels. */
  colour: [number, number, number];
}

export interface FoundCells {
  cells: FoundCell[];
  /** Regions of a cell's size that are white cells (a large, very dark nucleus): left out of `cells`. */
  whiteCells: { box: Box; centroid: { x: number; y: number } }[];
  /** The diameter used (given, or estimated). */
  diameter: number;
  /** Working scale: working pixels per field pixel. */
  scale: number;
  /** The field of view as a circle in field pixels, when the photo has a dark surround. */
  fov?: { cx: number; cy: number; r: number };
  /** The cells' label map at the working scale (0: none; `i + 1`: `cells[i]`), for cropping masks. */
  labels: { data: Int32Array; width: number; height: number };
  /** Median RGB of the plasma (background inside the field of view). */
  plasma: [number, number, number];
}

const WORK_DIAMETER = 32;
/** Share of the green-dark pixels that must also be blue for blue − green to be used as a second cell cue. */
const BLUE_CUE_AGREEMENT = 0.85;
/** A white cell's nucleus: green below this share of the plasma's. */
const NUCLEUS_DARKNESS = 0.35;
/** Share of a region's pixels that must be that dark for it to be a white cell. */
const WHITE_CELL_DARK_SHARE = 0.2;
/** A cell is cut by the image's border when it meets it along at least this share of its diameter (`edgeContact`): a cut ≥ ~1 px deep. */
const CUT_CONTACT = 0.2;
/** A region with at least this share of its pixels inside other cells' discs is made of their pieces (`phantomRegions`). */
const PHANTOM_SHARE = 0.6;

/** Otsu's threshold of a 256-bin histogram (the level that best separates two classes). */
export function otsuThreshold(hist: ArrayLike<number>): number {
  let total = 0;
  let sum = 0;
  for (let v = 0; v < 256; v++) {
    total += hist[v]!;
    sum += v * hist[v]!;
  }
  let best = 0;
  let bestVar = -1;
  let w0 = 0;
  let sum0 = 0;
  for (let t = 0; t < 256; t++) {
    w0 += hist[t]!;
    if (w0 === 0) continue;
    const w1 = total - w0;
    if (w1 === 0) break;
    sum0 += t * hist[t]!;
    const m0 = sum0 / w0;
    const m1 = (sum - sum0) / w1;
    const between = w0 * w1 * (m0 - m1) * (m0 - m1);
    if (between > bestVar) {
      bestVar = between;
      best = t;
    }
  }
  return best;
}

/** RGB bytes resized by `scale` (area averaging), JS-owned. */
function resized(cv: OpenCv, rgb: Uint8Array, width: number, height: number, scale: number): { px: Uint8Array; w: number; h: number } {
  if (scale >= 1) return { px: rgb, w: width, h: height };
  const full = new cv.Mat(height, width, cv.CV_8UC3);
  full.data.set(rgb);
  const out = new cv.Mat();
  const w = Math.max(1, Math.round(width * scale));
  const h = Math.max(1, Math.round(height * scale));
  cv.resize(full, out, new cv.Size(w, h), 0, 0, cv.INTER_AREA);
  const px = out.data.slice();
  full.delete();
  out.delete();
  return { px, w, h };
}

/** A CV_8UC1 Mat holding a copy of `bytes`. */
function mat8(cv: OpenCv, bytes: Uint8Array, w: number, h: number) {
  const m = new cv.Mat(h, w, cv.CV_8UC1);
  m.data.set(bytes);
  return m;
}

/**
 * Foreground (cells, holes filled) and field of view at the image's scale, as JS-owned bytes (255 / 0). Views into
 * OpenCV's heap (`mat.data`) go stale when the heap grows, so every result is copied out before the next call.
 */
function foreground(cv: OpenCv, px: Uint8Array, w: number, h: number, closeSize: number, maxHoleArea: number): { fg: Uint8Array; raw: Uint8Array; fov: Uint8Array; hasSurround: boolean } {
  const n = w * h;
  // Field of view: bright pixels, the largest connected region, holes filled.
  const bright = new Uint8Array(n);
  for (let i = 0; i < n; i++) bright[i] = Math.max(px[i * 3]!, px[i * 3 + 1]!, px[i * 3 + 2]!) > 60 ? 255 : 0;
  const brightMat = mat8(cv, bright, w, h);
  const fovMat = fillLargest(cv, brightMat);
  const fov = fovMat.data.slice();
  brightMat.delete();
  fovMat.delete();
  let fovCount = 0;
  for (let i = 0; i < n; i++) if (fov[i]) fovCount++;
  const hasSurround = fovCount < 0.97 * n;
  // Cells: darker green than the plasma, by Otsu's threshold inside the field of view.
  const hist = new Float64Array(256);
  for (let i = 0; i < n; i++) if (fov[i]) hist[px[i * 3 + 1]!]!++;
  const t = otsuThreshold(hist);
  const cells = new Uint8Array(n);
  for (let i = 0; i < n; i++) cells[i] = fov[i] && px[i * 3 + 1]! <= t ? 255 : 0;
  // Pale cells (lavender on a beige plasma: phone photos of Giemsa smears) can be as bright in green as the plasma,
  // but are bluer: blue − green separates them. Used only where it is a cell cue in this image — nearly every pixel
  // the green threshold calls cell is also on the blue side (NIH field: 96 %; where cells are pink or brown, as in
  // other labs' photos and the synthetic fields, half or fewer are, and the green threshold alone is used).
  const blueness = (i: number) => Math.max(0, Math.min(255, px[i * 3 + 2]! - px[i * 3 + 1]! + 128));
  const histB = new Float64Array(256);
  for (let i = 0; i < n; i++) if (fov[i]) histB[blueness(i)]!++;
  const tb = otsuThreshold(histB);
  let dark = 0;
  let darkBlue = 0;
  for (let i = 0; i < n; i++) {
    if (!cells[i]) continue;
    dark++;
    if (blueness(i) > tb) darkBlue++;
  }
  const blueCue = dark > 0 && darkBlue / dark >= BLUE_CUE_AGREEMENT;
  if (blueCue) for (let i = 0; i < n; i++) if (fov[i] && blueness(i) > tb) cells[i] = 255;
  const fgMat = mat8(cv, cells, w, h);
  const k3 = cv.getStructuringElement(cv.MORPH_ELLIPSE, new cv.Size(3, 3));
  cv.morphologyEx(fgMat, fgMat, cv.MORPH_OPEN, k3);
  const raw = fgMat.data.slice();
  // A pale centre can reach the plasma through a pale spot of the rim: close such gaps (a sixth of a cell) first.
  const gap = Math.max(3, Math.round(closeSize) | 1);
  const kc = cv.getStructuringElement(cv.MORPH_ELLIPSE, new cv.Size(gap, gap));
  cv.morphologyEx(fgMat, fgMat, cv.MORPH_CLOSE, kc);
  const filled = fillHoles(cv, fgMat, maxHoleArea);
  const fg = filled.data.slice();
  for (const m of [fgMat, k3, kc, filled]) m.delete();
  return { fg, raw, fov, hasSurround };
}

/**
 * Clumps: a label larger than `maxArea` (overlapping cells whose distance transform has one maximum for several
 * cells, so one seed flooded them all) is split into k = round(area / `cellArea`) cells (2 … `maxCells`), and one
 * of 1.4 `cellArea` or more that is elongated (principal axes > 1.45 : 1: a pair) into two, by k-means
 * on its pixels' coordinates (farthest-point start): overlapping discs part near their centres. Larger regions (a
 * thick area, a smear's edge) stay whole and are dropped by the size filter. Returns new labels (new cells numbered
 * after the largest label).
 */
export function splitClumps(labels: Int32Array, w: number, cellArea: number, maxArea: number, maxCells = 6): Int32Array {
  const pixels = new Map<number, number[]>();
  let top = 1;
  for (let i = 0; i < labels.length; i++) {
    const l = labels[i]!;
    if (l < 2) continue;
    if (l > top) top = l;
    const list = pixels.get(l);
    if (list) list.push(i);
    else pixels.set(l, [i]);
  }
  const out = labels.slice();
  for (const [, idx] of pixels) {
    if (idx.length <= 1.4 * cellArea || idx.length > (maxCells + 0.5) * cellArea) continue;
    const xs = idx.map((i) => i % w);
    const ys = idx.map((i) => Math.floor(i / w));
    const cx = xs.reduce((a, b) => a + b, 0) / xs.length;
    const cy = ys.reduce((a, b) => a + b, 0) / ys.length;
    let k: number;
    if (idx.length > maxArea) k = Math.min(maxCells, Math.max(2, Math.round(idx.length / cellArea)));
    else {
      // Below the size filter's limit, a region of 1.4 cells or more is two cells only when it is elongated (a
      // large single cell is round): the ratio of its principal axes, from the second moments, above 1.45.
      let sxx = 0;
      let syy = 0;
      let sxy = 0;
      for (let j = 0; j < xs.length; j++) {
        sxx += (xs[j]! - cx) ** 2;
        syy += (ys[j]! - cy) ** 2;
        sxy += (xs[j]! - cx) * (ys[j]! - cy);
      }
      const half = (sxx + syy) / 2;
      const root = Math.sqrt(((sxx - syy) / 2) ** 2 + sxy * sxy);
      if (half - root <= 0 || Math.sqrt((half + root) / (half - root)) <= 1.45) continue;
      k = 2;
    }
    // Farthest-point start: the pixel farthest from the centroid, then each next farthest from those chosen.
    const centres: [number, number][] = [];
    let far = 0;
    for (let j = 1; j < idx.length; j++) if ((xs[j]! - cx) ** 2 + (ys[j]! - cy) ** 2 > (xs[far]! - cx) ** 2 + (ys[far]! - cy) ** 2) far = j;
    centres.push([xs[far]!, ys[far]!]);
    while (centres.length < k) {
      let best = 0;
      let bestD = -1;
      for (let j = 0; j < idx.length; j++) {
        let d = Infinity;
        for (const [x, y] of centres) d = Math.min(d, (xs[j]! - x) ** 2 + (ys[j]! - y) ** 2);
        if (d > bestD) {
          bestD = d;
          best = j;
        }
      }
      centres.push([xs[best]!, ys[best]!]);
    }
    const assign = new Int32Array(idx.length);
    for (let iter = 0; iter < 20; iter++) {
      let moved = false;
      for (let j = 0; j < idx.length; j++) {
        let c = 0;
        let d = Infinity;
        centres.forEach(([x, y], q) => {
          const e = (xs[j]! - x) ** 2 + (ys[j]! - y) ** 2;
          if (e < d) {
            d = e;
            c = q;
          }
        });
        if (assign[j] !== c) moved = true;
        assign[j] = c;
      }
      const sum = centres.map(() => [0, 0, 0]);
      for (let j = 0; j < idx.length; j++) {
        const t = sum[assign[j]!]!;
        t[0]! += xs[j]!;
        t[1]! += ys[j]!;
        t[2]!++;
      }
      sum.forEach(([sx, sy, n], q) => {
        if (n! > 0) centres[q] = [sx! / n!, sy! / n!];
      });
      if (!moved && iter > 0) break;
    }
    const first = top + 1;
    top += k;
    for (let j = 0; j < idx.length; j++) out[idx[j]!] = first + assign[j]!;
  }
  return out;
}

/**
 * Each cell label (≥ 2) opened by a square of side 2r + 1: strips thinner than that — a neighbour's rim, or the
 * plasma between three cells, handed to a cell by the flood beyond a gap — go to the background (1); a cell's body
 * is untouched. Label-wise: a pixel survives the erosion only if its whole square has its label.
 */
export function openLabels(labels: Int32Array, w: number, h: number, r: number): Int32Array {
  if (r < 1) return labels;
  const eroded = new Int32Array(w * h);
  for (let y = 0; y < h; y++) {
    for (let x = 0; x < w; x++) {
      const l = labels[y * w + x]!;
      if (l < 2) continue;
      let all = true;
      for (let dy = -r; dy <= r && all; dy++) {
        const yy = y + dy;
        if (yy < 0 || yy >= h) continue;
        for (let dx = -r; dx <= r; dx++) {
          const xx = x + dx;
          if (xx >= 0 && xx < w && labels[yy * w + xx] !== l) {
            all = false;
            break;
          }
        }
      }
      if (all) eroded[y * w + x] = l;
    }
  }
  const out = labels.slice();
  for (let y = 0; y < h; y++) {
    for (let x = 0; x < w; x++) {
      const l = labels[y * w + x]!;
      if (l < 2) continue;
      let near = false;
      for (let dy = -r; dy <= r && !near; dy++) {
        const yy = y + dy;
        if (yy < 0 || yy >= h) continue;
        for (let dx = -r; dx <= r; dx++) {
          const xx = x + dx;
          if (xx >= 0 && xx < w && eroded[yy * w + xx] === l) {
            near = true;
            break;
          }
        }
      }
      if (!near) out[y * w + x] = 1;
    }
  }
  return out;
}

/** Each cell label (≥ 2) keeps its largest 4-connected piece; the slivers cut off from it go to the background (1). */
export function largestPiecePerLabel(labels: Int32Array, w: number, h: number): Int32Array {
  const out = labels.slice();
  const piece = new Int32Array(w * h).fill(-1);
  const sizes: number[] = [];
  const best = new Map<number, number>(); // label → its largest piece
  const stack: number[] = [];
  for (let start = 0; start < w * h; start++) {
    const label = labels[start]!;
    if (label < 2 || piece[start] !== -1) continue;
    const id = sizes.length;
    let size = 0;
    piece[start] = id;
    stack.push(start);
    while (stack.length) {
      const i = stack.pop()!;
      size++;
      const x = i % w;
      const y = (i - x) / w;
      for (const j of [x > 0 ? i - 1 : -1, x < w - 1 ? i + 1 : -1, y > 0 ? i - w : -1, y < h - 1 ? i + w : -1]) {
        if (j >= 0 && piece[j] === -1 && labels[j] === label) {
          piece[j] = id;
          stack.push(j);
        }
      }
    }
    sizes.push(size);
    const b = best.get(label);
    if (b === undefined || size > sizes[b]!) best.set(label, id);
  }
  for (let i = 0; i < w * h; i++) if (labels[i]! >= 2 && best.get(labels[i]!) !== piece[i]) out[i] = 1;
  return out;
}

/**
 * Pixels that closing and hole filling added (`fg` but not `raw`) and that lie away from their cell's seed go back to
 * the background: that is the plasma closed in between touching cells, which the flood gave to one of them, and which
 * a crop then showed as a pale wedge at the cell's edge — a model reads it as something (seen on synthetic fields).
 * A cell's own pale centre lies near its seed and stays. "Away" is beyond `reach` × the seed's distance to the
 * background (its inscribed radius). `seedOf(label)` is the seed's pixel index.
 *
 * Tried first and dropped: removing every added piece that borders two or more cells. On the NIH field a cell's pale
 * centre, joined through a pale spot of its rim to the plasma outside, was such a piece: the hole it left in the crop
 * was read as a ring form (two new false positives, same model).
 */
export function dropPlasmaBetweenCells(fg: Uint8Array, raw: Uint8Array, labels: Int32Array, dist: Float32Array, w: number, seedOf: (label: number) => number | undefined, reach = 0.7): Uint8Array {
  const out = fg.slice();
  for (let i = 0; i < fg.length; i++) {
    if (!fg[i] || raw[i] || labels[i]! < 2) continue;
    const s = seedOf(labels[i]!);
    if (s === undefined) continue;
    const dx = (i % w) - (s % w);
    const dy = Math.floor(i / w) - Math.floor(s / w);
    if (dx * dx + dy * dy > (reach * dist[s]!) ** 2) out[i] = 0;
  }
  return out;
}

/** The largest 8-connected region of a binary Mat, holes filled (new Mat). */
function fillLargest(cv: OpenCv, bin: InstanceType<OpenCv['Mat']>) {
  const contours = new cv.MatVector();
  const hierarchy = new cv.Mat();
  cv.findContours(bin, contours, hierarchy, cv.RETR_EXTERNAL, cv.CHAIN_APPROX_SIMPLE);
  let best = -1;
  let bestArea = 0;
  for (let i = 0; i < contours.size(); i++) {
    const c = contours.get(i);
    const a = cv.contourArea(c);
    c.delete();
    if (a > bestArea) {
      bestArea = a;
      best = i;
    }
  }
  const out = cv.Mat.zeros(bin.rows, bin.cols, cv.CV_8UC1);
  if (best >= 0) cv.drawContours(out, contours, best, new cv.Scalar(255), -1);
  contours.delete();
  hierarchy.delete();
  return out;
}

/**
 * Holes of the foreground up to `maxHoleArea` pixels filled: the cells' pale centres become cell, while plasma
 * enclosed by a ring of touching cells (larger than a cell's centre) stays background.
 */
function fillHoles(cv: OpenCv, bin: InstanceType<OpenCv['Mat']>, maxHoleArea: number) {
  const contours = new cv.MatVector();
  const hierarchy = new cv.Mat();
  cv.findContours(bin, contours, hierarchy, cv.RETR_CCOMP, cv.CHAIN_APPROX_SIMPLE);
  // RETR_CCOMP: two levels; a contour with a parent (hierarchy[i][3] ≥ 0) is a hole.
  const tree = hierarchy.data32S.slice();
  const out = bin.clone();
  for (let i = 0; i < contours.size(); i++) {
    if (tree[i * 4 + 3]! < 0) continue;
    const c = contours.get(i);
    const area = cv.contourArea(c);
    c.delete();
    if (area <= maxHoleArea) cv.drawContours(out, contours, i, new cv.Scalar(255), -1);
  }
  contours.delete();
  hierarchy.delete();
  return out;
}

/** Euclidean distance of each foreground pixel to the background (JS-owned). */
function distance(cv: OpenCv, fg: Uint8Array, w: number, h: number): Float32Array {
  const m = mat8(cv, fg, w, h);
  const dist = new cv.Mat();
  cv.distanceTransform(m, dist, cv.DIST_L2, 5);
  const d = dist.data32F.slice();
  m.delete();
  dist.delete();
  return d;
}

/** A typical cell's diameter from the distance transform: twice the median height of its regional maxima. */
function estimateDiameter(cv: OpenCv, fg: Uint8Array, w: number, h: number): number | undefined {
  const d = distance(cv, fg, w, h);
  const peaks: number[] = [];
  for (let y = 2; y < h - 2; y++) {
    for (let x = 2; x < w - 2; x++) {
      const v = d[y * w + x]!;
      if (v < 2) continue;
      let max = true;
      for (let dy = -2; dy <= 2 && max; dy++) for (let dx = -2; dx <= 2 && max; dx++) if (d[(y + dy) * w + x + dx]! > v) max = false;
      if (max) peaks.push(v);
    }
  }
  if (peaks.length < 3) return undefined;
  peaks.sort((a, b) => a - b);
  // Maxima of a disc of radius r sit at r; ridges between touching cells sit lower: the upper half is the cells.
  return 2 * peaks[Math.floor(peaks.length * 0.75)]!;
}

/**
 * Find the red cells of a field (`rgb`: `width × height × 3` bytes).
 * @example const { cells } = await findCells(rgb, 5312, 2988, { diameter: 120 });
 */
export async function findCells(rgb: Uint8Array, width: number, height: number, options: FindCellsOptions = {}): Promise<FoundCells> {
  if (rgb.length !== width * height * 3) throw new InvalidParameterError('rgb', `${width}×${height}×3 bytes`, rgb.length);
  if (options.diameter !== undefined && !(options.diameter >= 8 && options.diameter <= 2000)) throw new InvalidParameterError('cellDiameter', 'a cell diameter in pixels, 8–2000', options.diameter);
  const [lo, hi] = options.sizeRange ?? [0.55, 1.6];
  if (!(lo > 0 && hi > lo)) throw new InvalidParameterError('sizeRange', '0 < min < max', options.sizeRange);
  const cv = await loadOpenCv();
  let diameter = options.diameter;
  if (diameter === undefined) {
    // A first look at ≤ 1,200 px to estimate the cells' size.
    const s0 = Math.min(1, 1200 / Math.max(width, height));
    const coarse = resized(cv, rgb, width, height, s0);
    const { fg } = foreground(cv, coarse.px, coarse.w, coarse.h, 3, Infinity);
    const d = estimateDiameter(cv, fg, coarse.w, coarse.h);
    // No estimate, or one no cell can have (an image with no cells to tell apart: a whole-image "cell"): 100 px.
    diameter = d === undefined || !(d / s0 >= 8 && d / s0 <= Math.min(2000, Math.max(width, height))) ? 100 : d / s0;
  }
  const scale = Math.min(1, WORK_DIAMETER / diameter);
  const { px, w, h } = resized(cv, rgb, width, height, scale);
  // A pale centre is at most ~40 % of a cell; plasma enclosed by a ring of cells is mostly larger.
  const { fg: filled, raw, fov, hasSurround } = foreground(cv, px, w, h, (diameter * scale) / 6, 0.4 * (Math.PI / 4) * (diameter * scale) ** 2);
  const fg = filled;
  const wd = diameter * scale;
  // Markers: regional maxima of the distance transform, at least ~a third of a cell apart.
  const d = distance(cv, fg, w, h);
  const reach = Math.max(2, Math.round(wd * 0.3));
  const kernel = cv.getStructuringElement(cv.MORPH_ELLIPSE, new cv.Size(2 * reach + 1, 2 * reach + 1));
  const distMat = new cv.Mat(h, w, cv.CV_32F);
  distMat.data32F.set(d);
  const dilatedMat = new cv.Mat();
  cv.dilate(distMat, dilatedMat, kernel);
  const dd = dilatedMat.data32F.slice();
  for (const mat of [distMat, dilatedMat, kernel]) mat.delete();
  // Candidates: pixels at the maximum of their neighbourhood; the highest first, none within half a cell of another.
  const candidates: number[] = [];
  for (let i = 0; i < w * h; i++) if (d[i]! > 0.3 * wd && d[i]! >= dd[i]! - 1e-3) candidates.push(i);
  candidates.sort((a, b) => d[b]! - d[a]! || a - b);
  const accepted: number[] = [];
  const minGap2 = (0.5 * wd) ** 2;
  for (const i of candidates) {
    const x = i % w;
    const y = (i - x) / w;
    if (accepted.every((j) => ((j % w) - x) ** 2 + (Math.floor(j / w) - y) ** 2 >= minGap2)) accepted.push(i);
  }
  // Labels: 1 = background, 2… = one seed per cell, 0 = to decide (the rest of the foreground).
  const seeds = new Int32Array(w * h);
  for (let i = 0; i < w * h; i++) seeds[i] = fg[i] ? 0 : 1;
  accepted.forEach((i, k) => {
    seeds[i] = k + 2;
  });
  const flooded = floodFromSeeds(seeds, d, w, h);
  // The plasma between touching cells goes back to the background (cells keep their pale centres).
  const cellPx = dropPlasmaBetweenCells(fg, raw, flooded, d, w, (label) => accepted[label - 2]);
  const minArea = (Math.PI / 4) * (lo * wd) ** 2;
  const maxArea = (Math.PI / 4) * (hi * wd) ** 2;
  // Clumps of overlapping cells that one seed flooded are split by size before the size filter would drop them.
  const m = largestPiecePerLabel(
    splitClumps(
      largestPiecePerLabel(
        openLabels(
          flooded.map((l, i) => (l >= 2 && !cellPx[i] ? 1 : l)),
          w,
          h,
          Math.max(1, Math.round(0.03 * wd)),
        ),
        w,
        h,
      ),
      w,
      (Math.PI / 4) * wd * wd,
      maxArea,
    ),
    w,
    h,
  );
  // Regions: area, bounds, centroid; then the size filter.
  const regions = new Map<number, { area: number; x0: number; y0: number; x1: number; y1: number; sx: number; sy: number; edge: boolean; window: boolean; rgb: [number, number, number] }>();
  const imageEdge = (x: number, y: number) => x <= 0 || y <= 0 || x >= w - 1 || y >= h - 1;
  const windowEdge = (x: number, y: number) => hasSurround && (!fov[(y - 1) * w + x] || !fov[(y + 1) * w + x] || !fov[y * w + x - 1] || !fov[y * w + x + 1]);
  for (let y = 0; y < h; y++) {
    for (let x = 0; x < w; x++) {
      const l = m[y * w + x]!;
      if (l < 2 || !fg[y * w + x]) continue;
      let r = regions.get(l);
      if (!r) regions.set(l, (r = { area: 0, x0: x, y0: y, x1: x, y1: y, sx: 0, sy: 0, edge: false, window: false, rgb: [0, 0, 0] }));
      r.area++;
      for (let c = 0; c < 3; c++) r.rgb[c]! += px[(y * w + x) * 3 + c]!;
      r.sx += x;
      r.sy += y;
      if (x < r.x0) r.x0 = x;
      if (x > r.x1) r.x1 = x;
      if (y < r.y0) r.y0 = y;
      if (y > r.y1) r.y1 = y;
      if (!r.edge && imageEdge(x, y)) r.edge = true;
      else if (!r.window && !imageEdge(x, y) && windowEdge(x, y)) r.window = true;
    }
  }
  // White cells: a leukocyte's nucleus is far darker than any red cell (NIH field: green 13 where the plasma is 188
  // and red cells 140–180) and large; a parasite's chromatin is as dark but a few percent of its cell. A region whose
  // pixels are at least a fifth this dark is a white cell: not a red cell, so neither counted nor classified.
  const hist = [new Uint32Array(256), new Uint32Array(256), new Uint32Array(256)] as const;
  let plasmaCount = 0;
  for (let i = 0; i < w * h; i += 7) {
    if (!fov[i] || fg[i]) continue;
    plasmaCount++;
    for (let c = 0; c < 3; c++) hist[c]![px[i * 3 + c]!]!++;
  }
  const median = (hh: Uint32Array) => {
    let n = 0;
    for (let v = 0; v < 256; v++) if ((n += hh[v]!) > plasmaCount / 2) return v;
    return 255;
  };
  const plasma = hist.map(median) as [number, number, number];
  const nucleusLevel = NUCLEUS_DARKNESS * plasma[1];
  const darkCount = new Map<number, number>();
  for (let i = 0; i < w * h; i++) if (m[i]! >= 2 && fg[i] && px[i * 3 + 1]! < nucleusLevel) darkCount.set(m[i]!, (darkCount.get(m[i]!) ?? 0) + 1);
  const isWhiteCell = (l: number, r: { area: number }) => (darkCount.get(l) ?? 0) >= WHITE_CELL_DARK_SHARE * r.area;
  // A cell cut by the image's or the window's edge keeps what is visible of it: half the smallest area will do.
  const sized = [...regions.entries()].filter(([, r]) => r.area >= (r.edge || r.window ? minArea / 2 : minArea) && r.area <= maxArea);
  const inv = 1 / scale;
  // A region's box and centroid in field pixels.
  const boxOf = (r: { x0: number; y0: number; x1: number; y1: number }): Box => ({ x: Math.floor(r.x0 * inv), y: Math.floor(r.y0 * inv), width: Math.min(width, Math.ceil((r.x1 + 1) * inv)) - Math.floor(r.x0 * inv), height: Math.min(height, Math.ceil((r.y1 + 1) * inv)) - Math.floor(r.y0 * inv) });
  const centroidOf = (r: { sx: number; sy: number; area: number }) => ({ x: Math.round((r.sx / r.area + 0.5) * inv * 10) / 10, y: Math.round((r.sy / r.area + 0.5) * inv * 10) / 10 });
  const whiteCells = sized.filter(([l, r]) => isWhiteCell(l, r)).map(([, r]) => ({ box: boxOf(r), centroid: centroidOf(r) }));
  const kept = sized.filter(([l, r]) => !isWhiteCell(l, r)).sort((a, b) => a[1].y0 - b[1].y0 || a[1].x0 - b[1].x0);
  const relabel = new Map<number, number>(kept.map(([l], i) => [l, i + 1]));
  const labels = new Int32Array(w * h);
  for (let i = 0; i < w * h; i++) labels[i] = fg[i] ? (relabel.get(m[i]!) ?? 0) : 0;
  // Cells the working scale sees at the image's border (not only the window's): looked at again below.
  const atBorder = new Set(kept.flatMap(([, r], i) => (r.edge && !r.window ? [i] : [])));
  const cells: FoundCell[] = kept.map(([, r], i) => {
    const polygon = outline(cv, labels, w, i + 1, r).map(([x, y]) => [Math.round(x * inv * 10) / 10, Math.round(y * inv * 10) / 10] as [number, number]);
    return {
      box: boxOf(r),
      polygon,
      area: Math.round(r.area * inv * inv),
      centroid: centroidOf(r),
      clipped: r.edge || r.window,
      circle: enclosingCircle(polygon),
      colour: r.rgb.map((v) => Math.round(v / r.area)) as [number, number, number],
    };
  });
  let fovCircle: FoundCells['fov'];
  if (hasSurround && fov.some((v) => v > 0)) {
    let a = 0;
    let sx = 0;
    let sy = 0;
    for (let y = 0; y < h; y++) for (let x = 0; x < w; x++) if (fov[y * w + x]) (a++, (sx += x), (sy += y));
    fovCircle = { cx: Math.round(((sx / a + 0.5) * inv)), cy: Math.round(((sy / a + 0.5) * inv)), r: Math.round(Math.sqrt(a / Math.PI) * inv) };
  }
  // The working scale sees a cell that only comes within a few pixels of the image's border as touching it: look
  // again at the field's pixels. (The window's edge is a blurred ring in real photos: there the working scale decides.)
  cells.forEach((c, i) => {
    if (atBorder.has(i)) c.clipped = edgeContact(rgb, width, height, c, plasma) >= CUT_CONTACT * diameter;
  });
  // Pieces of overlapping neighbours (and the plasma closed in between them) that the flood made a region of their own.
  const phantom = phantomRegions(labels, w, cells, scale, diameter);
  if (phantom.size > 0) {
    const renumber = new Int32Array(cells.length + 1);
    let next = 0;
    for (let i = 0; i < cells.length; i++) renumber[i + 1] = phantom.has(i) ? 0 : ++next;
    for (let i = 0; i < labels.length; i++) labels[i] = renumber[labels[i]!]!;
    cells.splice(0, cells.length, ...cells.filter((_, i) => !phantom.has(i)));
  }
  return { cells, whiteCells, diameter, scale, ...(fovCircle ? { fov: fovCircle } : {}), labels: { data: labels, width: w, height: h }, plasma };
}

/**
 * Regions that lie mostly (≥ `PHANTOM_SHARE` of their pixels) inside other cells' discs: where three cells overlap or
 * enclose a pocket of plasma, the flood can make a region of the neighbours' overlapping parts and the pocket between
 * them (seen on synthetic fields: such a region was called parasitized with p ≈ 1; its box matched no cell, IoU ≤ 0.35).
 * A real cell partly under a neighbour has most of itself outside the neighbours' discs (10 synthetic fields: ≤ 0.45
 * for every region matching a cell; phantoms 0.71–0.87). Discs of regions larger than a single cell are not used.
 * Returns the phantoms' indices (`labels` value − 1).
 */
export function phantomRegions(labels: Int32Array, w: number, cells: readonly Pick<FoundCell, 'circle'>[], scale: number, diameter: number): Set<number> {
  const h = labels.length / w;
  const area = new Float64Array(cells.length);
  for (let i = 0; i < labels.length; i++) if (labels[i]! >= 1) area[labels[i]! - 1]!++;
  // Each disc marks the pixels of other regions under it (each pixel once): work ~ the discs' area, not pixels × discs.
  const covered = new Uint8Array(labels.length);
  const inside = new Float64Array(cells.length);
  cells.forEach((c, j) => {
    const r = c.circle.r * scale;
    if (r >= 0.65 * diameter * scale) return;
    const cx = c.circle.cx * scale;
    const cy = c.circle.cy * scale;
    for (let y = Math.max(0, Math.floor(cy - r)); y <= Math.min(h - 1, Math.ceil(cy + r)); y++) {
      for (let x = Math.max(0, Math.floor(cx - r)); x <= Math.min(w - 1, Math.ceil(cx + r)); x++) {
        const i = y * w + x;
        const l = labels[i]!;
        if (l < 1 || l - 1 === j || covered[i] || (x + 0.5 - cx) ** 2 + (y + 0.5 - cy) ** 2 >= r * r) continue;
        covered[i] = 1;
        inside[l - 1]!++;
      }
    }
  });
  const out = new Set<number>();
  for (let k = 0; k < cells.length; k++) if (area[k]! > 0 && inside[k]! >= PHANTOM_SHARE * area[k]!) out.add(k);
  return out;
}

/**
 * How many of a cell's pixels, in field pixels, lie on the image's border. A pixel is the cell's when it lies in its
 * disc (enclosing circle, 2 px wider) and its colour is nearer the cell's mean than the plasma's. A cell cut by the
 * border meets it along a chord (a cut 1 px deep: ≈ 0.2 of its diameter); one that only comes within a pixel or two
 * of it, barely or not at all.
 */
export function edgeContact(rgb: Uint8Array, width: number, height: number, cell: Pick<FoundCell, 'box' | 'circle' | 'colour'>, plasma: readonly number[]): number {
  const { cx, cy, r } = cell.circle;
  const d2 = (s: number, c: readonly number[]) => (rgb[s]! - c[0]!) ** 2 + (rgb[s + 1]! - c[1]!) ** 2 + (rgb[s + 2]! - c[2]!) ** 2;
  const x0 = Math.max(0, Math.floor(cell.box.x - 2));
  const y0 = Math.max(0, Math.floor(cell.box.y - 2));
  const x1 = Math.min(width - 1, Math.ceil(cell.box.x + cell.box.width + 1));
  const y1 = Math.min(height - 1, Math.ceil(cell.box.y + cell.box.height + 1));
  let n = 0;
  for (let y = y0; y <= y1; y++) {
    for (let x = x0; x <= x1; x++) {
      if ((x > 0 && y > 0 && x < width - 1 && y < height - 1) || (x + 0.5 - cx) ** 2 + (y + 0.5 - cy) ** 2 > (r + 2) ** 2) continue;
      const s = (y * width + x) * 3;
      if (d2(s, cell.colour) <= d2(s, plasma)) n++;
    }
  }
  return n;
}

/**
 * Watershed on the distance transform: every undecided foreground pixel takes the label of the seed that reaches it
 * first when the seeds grow downhill from the cells' centres (highest distance first; 4-connected; ties by order).
 * Touching cells meet at the neck between them. Returns the labels (1 background, ≥ 2 cells).
 */
export function floodFromSeeds(seeds: Int32Array, dist: Float32Array, w: number, h: number): Int32Array {
  const labels = seeds.slice();
  // A bucket queue over the distance, in tenths of a pixel (higher first).
  let top = 0;
  for (let i = 0; i < dist.length; i++) if (dist[i]! > top) top = dist[i]!;
  const levels = Math.ceil(top * 10) + 1;
  const buckets: number[][] = Array.from({ length: levels }, () => []);
  const level = (i: number) => Math.min(levels - 1, Math.round(dist[i]! * 10));
  const queued = new Uint8Array(w * h);
  const push = (i: number) => {
    queued[i] = 1;
    buckets[level(i)]!.push(i);
  };
  for (let i = 0; i < labels.length; i++) if (labels[i]! >= 2) push(i);
  for (let l = levels - 1; l >= 0; l--) {
    const bucket = buckets[l]!;
    // Pixels pushed at a level above the current one are taken now (never re-visit a higher bucket).
    for (let k = 0; k < bucket.length; k++) {
      const i = bucket[k]!;
      const x = i % w;
      const y = (i - x) / w;
      const label = labels[i]!;
      for (const j of [x > 0 ? i - 1 : -1, x < w - 1 ? i + 1 : -1, y > 0 ? i - w : -1, y < h - 1 ? i + w : -1]) {
        if (j < 0 || queued[j] || labels[j] !== 0) continue;
        labels[j] = label;
        queued[j] = 1;
        buckets[Math.min(l, level(j))]!.push(j);
      }
    }
    bucket.length = 0;
  }
  return labels;
}

/** A region's outer boundary (OpenCV's contour of its mask), simplified to ~0.7 working pixels, at the working scale. */
function outline(cv: OpenCv, labels: Int32Array, w: number, label: number, r: { x0: number; y0: number; x1: number; y1: number }): [number, number][] {
  const rw = r.x1 - r.x0 + 3;
  const rh = r.y1 - r.y0 + 3;
  const bytes = new Uint8Array(rw * rh);
  for (let y = r.y0; y <= r.y1; y++) for (let x = r.x0; x <= r.x1; x++) if (labels[y * w + x] === label) bytes[(y - r.y0 + 1) * rw + (x - r.x0 + 1)] = 255;
  const mask = mat8(cv, bytes, rw, rh);
  const contours = new cv.MatVector();
  const hierarchy = new cv.Mat();
  cv.findContours(mask, contours, hierarchy, cv.RETR_EXTERNAL, cv.CHAIN_APPROX_NONE);
  let best: [number, number][] = [];
  let bestArea = -1;
  for (let i = 0; i < contours.size(); i++) {
    const c = contours.get(i);
    const area = cv.contourArea(c);
    if (area > bestArea) {
      const approx = new cv.Mat();
      cv.approxPolyDP(c, approx, 0.7, true);
      const p = approx.data32S.slice();
      best = [];
      for (let j = 0; j < p.length; j += 2) best.push([p[j]! + r.x0 - 1 + 0.5, p[j + 1]! + r.y0 - 1 + 0.5]);
      bestArea = area;
      approx.delete();
    }
    c.delete();
  }
  for (const m of [mask, hierarchy]) m.delete();
  contours.delete();
  return best;
}

/**
 * Where a neighbour lies over a cell, the watershed gives the cell half the lens they share. When the neighbour is
 * in front, those are its pixels, with its outline across them: a crop then shows an edge a model can read as
 * something (seen on synthetic fields: uninfected cells called parasitized with p ≈ 1). In each neighbour's disc
 * (its enclosing circle; neighbours of a single cell's size only) the pixels whose colour is nearer the neighbour's
 * mean than the cell's own are cut out of the crop's mask — the cell's own pixels there (it is in front, perhaps
 * with a parasite at its edge) stay — unless that would take more than a fifth of it.
 */
function trimNeighbourDiscs(mask: Uint8Array, rgb: Uint8Array, width: number, box: Box, index: number, cells: Pick<FoundCell, 'circle' | 'colour'>[], diameter: number): void {
  const self = cells[index];
  if (!self) return;
  const own = self.circle;
  const w = box.width;
  const h = box.height;
  let total = 0;
  for (let i = 0; i < mask.length; i++) total += mask[i]!;
  const d2 = (s: number, c: readonly number[]) => (rgb[s]! - c[0]!) ** 2 + (rgb[s + 1]! - c[1]!) ** 2 + (rgb[s + 2]! - c[2]!) ** 2;
  for (let j = 0; j < cells.length; j++) {
    const c = cells[j]!.circle;
    if (j === index || c.r > 0.65 * diameter || Math.hypot(c.cx - own.cx, c.cy - own.cy) >= c.r + own.r) continue;
    const theirs = cells[j]!.colour;
    const cut: number[] = [];
    for (let y = Math.max(0, Math.floor(c.cy - c.r - box.y)); y < Math.min(h, Math.ceil(c.cy + c.r - box.y)); y++) {
      for (let x = Math.max(0, Math.floor(c.cx - c.r - box.x)); x < Math.min(w, Math.ceil(c.cx + c.r - box.x)); x++) {
        if (!mask[y * w + x] || (box.x + x + 0.5 - c.cx) ** 2 + (box.y + y + 0.5 - c.cy) ** 2 >= c.r * c.r) continue;
        const s = ((box.y + y) * width + box.x + x) * 3;
        if (d2(s, theirs) < d2(s, self.colour)) cut.push(y * w + x);
      }
    }
    if (cut.length > 0.2 * total) continue;
    for (const i of cut) mask[i] = 0;
    total -= cut.length;
  }
}

/**
 * Plasma closed in between three or more touching cells can stay in a cell's mask (the working scale is too coarse to
 * see the gap): the crop then shows a pale wedge with neighbours' rims across it, which a model reads as something
 * (seen on synthetic fields: an uninfected cell called parasitized with p ≈ 1). From the mask's edge inward, pixels
 * clearly nearer the plasma's colour than the cell's own (less than half as far) are cut out, as far as they connect
 * and at most `depth` pixels in: a pale centre lies deeper and stays. Skipped when it would take more than a fifth
 * of the cell.
 */
export function trimPlasmaPockets(mask: Uint8Array, rgb: Uint8Array, width: number, box: Box, own: readonly number[], plasma: readonly number[], depth: number): number {
  const w = box.width;
  const h = box.height;
  const d2 = (s: number, c: readonly number[]) => (rgb[s]! - c[0]!) ** 2 + (rgb[s + 1]! - c[1]!) ** 2 + (rgb[s + 2]! - c[2]!) ** 2;
  const pale = (i: number) => {
    const s = ((box.y + Math.floor(i / w)) * width + box.x + (i % w)) * 3;
    return 4 * d2(s, plasma) < d2(s, own);
  };
  const seen = new Uint8Array(w * h);
  let queue: number[] = [];
  let total = 0;
  for (let i = 0; i < w * h; i++) {
    if (!mask[i]) continue;
    total++;
    const x = i % w;
    const y = (i - x) / w;
    const edge = x === 0 || y === 0 || x === w - 1 || y === h - 1 || !mask[i - 1] || !mask[i + 1] || !mask[i - w] || !mask[i + w];
    if (edge && pale(i)) {
      seen[i] = 1;
      queue.push(i);
    }
  }
  const cut = [...queue];
  for (let k = 1; k <= depth && queue.length > 0; k++) {
    const next: number[] = [];
    for (const i of queue) {
      const x = i % w;
      for (const j of [x > 0 ? i - 1 : -1, x < w - 1 ? i + 1 : -1, i - w, i + w]) {
        if (j < 0 || j >= w * h || !mask[j] || seen[j] || !pale(j)) continue;
        seen[j] = 1;
        next.push(j);
        cut.push(j);
      }
    }
    queue = next;
  }
  if (cut.length > 0.2 * total) return 0;
  for (const i of cut) mask[i] = 0;
  // Neighbours' rims that lined the pocket are left as slivers cut off from the cell: those go too.
  return cut.length + (cut.length > 0 ? keepLargestPiece(mask, w, h) : 0);
}

/**
 * The smallest circle enclosing `points` (Welzl's algorithm, iterative; expected linear time).
 * @example enclosingCircle([[0, 0], [10, 0], [5, 5]]) // { cx: 5, cy: 0, r: 5 }
 */
export function enclosingCircle(points: readonly (readonly [number, number])[]): { cx: number; cy: number; r: number } {
  const inside = (c: { cx: number; cy: number; r: number }, [x, y]: readonly [number, number]) => Math.hypot(x - c.cx, y - c.cy) <= c.r + 1e-7;
  const two = (a: readonly [number, number], b: readonly [number, number]) => ({ cx: (a[0] + b[0]) / 2, cy: (a[1] + b[1]) / 2, r: Math.hypot(a[0] - b[0], a[1] - b[1]) / 2 });
  const three = (a: readonly [number, number], b: readonly [number, number], c: readonly [number, number]) => {
    const d = 2 * (a[0] * (b[1] - c[1]) + b[0] * (c[1] - a[1]) + c[0] * (a[1] - b[1]));
    if (Math.abs(d) < 1e-12) {
      // Collinear: the circle on the two farthest apart.
      const pairs = [two(a, b), two(a, c), two(b, c)];
      return pairs.reduce((m, p) => (p.r > m.r ? p : m));
    }
    const sa = a[0] ** 2 + a[1] ** 2;
    const sb = b[0] ** 2 + b[1] ** 2;
    const sc = c[0] ** 2 + c[1] ** 2;
    const cx = (sa * (b[1] - c[1]) + sb * (c[1] - a[1]) + sc * (a[1] - b[1])) / d;
    const cy = (sa * (c[0] - b[0]) + sb * (a[0] - c[0]) + sc * (b[0] - a[0])) / d;
    return { cx, cy, r: Math.hypot(a[0] - cx, a[1] - cy) };
  };
  if (points.length === 0) return { cx: 0, cy: 0, r: 0 };
  // A fixed shuffle (deterministic results; the expected-time argument needs only some order, not a random one).
  const p = points.map((q, i) => ({ q, k: (i * 2654435761) % 4294967296 })).sort((a, b) => a.k - b.k).map((x) => x.q);
  let c = { cx: p[0]![0], cy: p[0]![1], r: 0 };
  for (let i = 1; i < p.length; i++) {
    if (inside(c, p[i]!)) continue;
    c = { cx: p[i]![0], cy: p[i]![1], r: 0 };
    for (let j = 0; j < i; j++) {
      if (inside(c, p[j]!)) continue;
      c = two(p[i]!, p[j]!);
      for (let k = 0; k < j; k++) if (!inside(c, p[k]!)) c = three(p[i]!, p[j]!, p[k]!);
    }
  }
  return c;
}

/**
 * One cell cut from the field the way the training crops were made: its bounding box, pixels outside the cell black.
 * The cell's mask is the label map sampled bilinearly (smooth, not blocky) and then eroded by ~3.5 % of the cell's
 * diameter: the rim a field blends into the plasma is not in the training crops (cells cut out on black), and a
 * model reads that pale rim as something (measured on synthetic fields with the demo's model: mean P(Parasitized) of
 * uninfected cells 0.85–0.94 with the rim, 0.02 without it). Neighbours lying over the cell are cut out
 * (`trimNeighbourDiscs`, when `found.cells` is given). Returns `box.width × box.height × 3` bytes.
 */
export function cropCell(rgb: Uint8Array, width: number, found: Pick<FoundCells, 'labels' | 'scale' | 'diameter'> & { cells?: Pick<FoundCell, 'circle' | 'colour'>[]; plasma?: FoundCells['plasma'] }, index: number, box: Box): Uint8Array {
  const { data, width: lw, height: lh } = found.labels;
  const label = index + 1;
  const at = (x: number, y: number) => (x >= 0 && y >= 0 && x < lw && y < lh && data[y * lw + x] === label ? 1 : 0);
  const w = box.width;
  const h = box.height;
  const mask = new Uint8Array(w * h);
  for (let y = 0; y < h; y++) {
    const gy = (box.y + y + 0.5) * found.scale - 0.5;
    const y0 = Math.floor(gy);
    const ay = gy - y0;
    for (let x = 0; x < w; x++) {
      const gx = (box.x + x + 0.5) * found.scale - 0.5;
      const x0 = Math.floor(gx);
      const ax = gx - x0;
      const v = (1 - ax) * (1 - ay) * at(x0, y0) + ax * (1 - ay) * at(x0 + 1, y0) + (1 - ax) * ay * at(x0, y0 + 1) + ax * ay * at(x0 + 1, y0 + 1);
      if (v >= 0.5) mask[y * w + x] = 1;
    }
  }
  // A pale spot inside the cell that the label map left out (dropped as plasma, opened away) is the cell's own: a crop
  // with black holes in the cell is unlike any training crop (seen: uninfected cells called parasitized, p 0.77–0.99).
  fillMaskHoles(mask, w, h);
  const inner = erodeSquare(mask, w, h, Math.max(1, Math.round(0.035 * found.diameter)));
  trimNeighbourDiscs(inner, rgb, width, box, index, found.cells ?? [], found.diameter);
  const own = found.cells?.[index]?.colour;
  if (own && found.plasma) trimPlasmaPockets(inner, rgb, width, box, own, found.plasma, Math.round(0.2 * found.diameter));
  const out = new Uint8Array(w * h * 3);
  for (let y = 0; y < h; y++) {
    for (let x = 0; x < w; x++) {
      if (!inner[y * w + x]) continue;
      const s = ((box.y + y) * width + box.x + x) * 3;
      const o = (y * w + x) * 3;
      out[o] = rgb[s]!;
      out[o + 1] = rgb[s + 1]!;
      out[o + 2] = rgb[s + 2]!;
    }
  }
  return out;
}
