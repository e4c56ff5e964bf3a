import type { Box } from '../cam/localize.js';
import { generateCell, type CellLabel } from './cells.js';
import { createRng } from './prng.js';

/** One cell laid out on a synthetic field, with its truth in field pixels. */
export interface FieldCellTruth {
  label: CellLabel;
  /** Bounding box of the cell's visible pixels (inside the image and the field of view). */
  box: Box;
  /** Share of the cell's pixels that are visible (cells cut by the edges are < 1). */
  visible: number;
  /** Parasite boxes (visible part), field pixels. */
  parasites: Box[];
}

export interface SyntheticField {
  rgb: Uint8Array;
  width: number;
  height: number;
  cells: FieldCellTruth[];
  /** Parasitized share of the cells wholly visible (camflow's rule: cells cut by an edge are not counted). */
  parasitemia: number;
  fov?: { cx: number; cy: number; r: number };
}

export interface SyntheticFieldOptions {
  width?: number;
  height?: number;
  /** Cells attempted (fewer land when the field is crowded). */
  cells?: number;
  parasitizedFraction?: number;
  /** A round field of view on black, as a phone on the eyepiece sees it (default true). */
  fov?: boolean;
}

/**
 * A synthetic thin-smear field: synthetic cells of varied sizes on a plasma-coloured background, some touching,
 * some cut by the image's or the window's edge, with every cell's box and every parasite's box as truth.
 * @example const f = generateField(3, { width: 1600, height: 1200, cells: 90 });
 */
export function generateField(seed: number, options: SyntheticFieldOptions = {}): SyntheticField {
  const rng = createRng(seed);
  const width = options.width ?? 1600;
  const height = options.height ?? 1200;
  const attempts = options.cells ?? 70;
  const fraction = options.parasitizedFraction ?? 0.2;
  const fov = (options.fov ?? true) ? { cx: width / 2 + rng.uniform(-20, 20), cy: height / 2 + rng.uniform(-20, 20), r: Math.min(width, height) * 0.55 } : undefined;
  const inFov = (x: number, y: number) => !fov || (x - fov.cx) ** 2 + (y - fov.cy) ** 2 <= fov.r ** 2;
  // Plasma: pale, with slow shading and grain.
  const bg: [number, number, number] = [rng.uniform(228, 242), rng.uniform(208, 222), rng.uniform(195, 212)];
  const rgb = new Float32Array(width * height * 3);
  for (let y = 0; y < height; y++) {
    for (let x = 0; x < width; x++) {
      const o = (y * width + x) * 3;
      if (!inFov(x + 0.5, y + 0.5)) continue;
      const shade = 1 - 0.05 * (((x - width / 2) / width) ** 2 + ((y - height / 2) / height) ** 2);
      for (let c = 0; c < 3; c++) rgb[o + c] = bg[c]! * shade + rng.normal() * 2;
    }
  }
  const placed: { cx: number; cy: number; r: number }[] = [];
  const cells: FieldCellTruth[] = [];
  for (let a = 0; a < attempts; a++) {
    const label: CellLabel = rng.next() < fraction ? 'Parasitized' : 'Uninfected';
    // Red cells of one smear are alike in size (~±10 %): draw until one falls in the band.
    let cell = generateCell(rng, label);
    for (let t = 0; t < 20 && (cell.width < 104 || cell.width > 132); t++) cell = generateCell(rng, label);
    const r = Math.min(cell.width, cell.height) * 0.44;
    // Centres anywhere, so that some cells are cut by the edges; neighbours may touch (centres ≥ 0.9 of the sum of the radii apart).
    let spot: { cx: number; cy: number } | undefined;
    for (let t = 0; t < 40 && !spot; t++) {
      const cx = rng.uniform(-0.2 * r, width + 0.2 * r);
      const cy = rng.uniform(-0.2 * r, height + 0.2 * r);
      if (fov && (cx - fov.cx) ** 2 + (cy - fov.cy) ** 2 > (fov.r + 0.2 * r) ** 2) continue;
      if (placed.every((p) => Math.hypot(p.cx - cx, p.cy - cy) >= 0.9 * (p.r + r))) spot = { cx, cy };
    }
    if (!spot) continue;
    placed.push({ ...spot, r });
    const x0 = Math.round(spot.cx - cell.width / 2);
    const y0 = Math.round(spot.cy - cell.height / 2);
    let total = 0;
    let shown = 0;
    let bx0 = Infinity;
    let by0 = Infinity;
    let bx1 = -1;
    let by1 = -1;
    for (let y = 0; y < cell.height; y++) {
      for (let x = 0; x < cell.width; x++) {
        const s = (y * cell.width + x) * 3;
        const level = Math.max(cell.rgb[s]!, cell.rgb[s + 1]!, cell.rgb[s + 2]!);
        if (level === 0) continue;
        const alpha = Math.min(1, level / 60);
        if (alpha >= 0.5) total++;
        const fx = x0 + x;
        const fy = y0 + y;
        if (fx < 0 || fy < 0 || fx >= width || fy >= height || !inFov(fx + 0.5, fy + 0.5)) continue;
        const o = (fy * width + fx) * 3;
        for (let c = 0; c < 3; c++) rgb[o + c] = alpha * cell.rgb[s + c]! + (1 - alpha) * rgb[o + c]!;
        if (alpha < 0.5) continue;
        shown++;
        bx0 = Math.min(bx0, fx);
        by0 = Math.min(by0, fy);
        bx1 = Math.max(bx1, fx);
        by1 = Math.max(by1, fy);
      }
    }
    if (shown === 0) continue;
    const clip = (b: Box): Box | undefined => {
      const ax = Math.max(b.x + x0, bx0);
      const ay = Math.max(b.y + y0, by0);
      const ex = Math.min(b.x + x0 + b.width, bx1 + 1);
      const ey = Math.min(b.y + y0 + b.height, by1 + 1);
      return ex > ax && ey > ay ? { x: ax, y: ay, width: ex - ax, height: ey - ay } : undefined;
    };
    cells.push({ label, box: { x: bx0, y: by0, width: bx1 - bx0 + 1, height: by1 - by0 + 1 }, visible: shown / total, parasites: cell.boxes.map(clip).filter((b): b is Box => b !== undefined) });
  }
  const out = new Uint8Array(rgb.length);
  for (let i = 0; i < rgb.length; i++) out[i] = Math.max(0, Math.min(255, Math.round(rgb[i]!)));
  const counted = cells.filter((c) => c.visible >= 0.999);
  const parasitemia = counted.length === 0 ? 0 : counted.filter((c) => c.label === 'Parasitized').length / counted.length;
  return { rgb: out, width, height, cells, parasitemia, ...(fov ? { fov } : {}) };
}
