import type { Box } from '../cam/localize.js';
import { createRng, type Rng } from './prng.js';

/**
 * Synthetic malaria-like cell crops, in the spirit of the NIH set: a stained red-cell disc on black, with
 * texture, size and shape variation. Parasitized cells carry 1–3 ring forms (a dark-purple ring with a chromatin
 * dot); uninfected cells sometimes carry look-alike distractors (pale lilac smudges, stain debris at the rim),
 * so colour alone does not separate the classes. Every parasite's box is returned as ground truth.
 */

export type CellLabel = 'Parasitized' | 'Uninfected';

export interface SyntheticCell {
  label: CellLabel;
  rgb: Uint8Array;
  width: number;
  height: number;
  /** Ground-truth parasite boxes in image pixels (empty for uninfected cells). */
  boxes: Box[];
}

const smoothstep = (e0: number, e1: number, x: number) => {
  const t = Math.min(Math.max((x - e0) / (e1 - e0), 0), 1);
  return t * t * (3 - 2 * t);
};

interface Mark {
  cx: number;
  cy: number;
  /** Outer radius. */
  r: number;
  kind: 'ring' | 'smudge' | 'debris';
  colour: [number, number, number];
  strength: number;
  dot: { dx: number; dy: number; r: number } | null;
}

function paint(rgb: Float32Array, width: number, height: number, mark: Mark): void {
  const pad = Math.ceil(mark.r + 2);
  for (let y = Math.max(0, Math.floor(mark.cy - pad)); y < Math.min(height, mark.cy + pad); y++) {
    for (let x = Math.max(0, Math.floor(mark.cx - pad)); x < Math.min(width, mark.cx + pad); x++) {
      const d = Math.hypot(x + 0.5 - mark.cx, y + 0.5 - mark.cy);
      let cover: number;
      if (mark.kind === 'ring') {
        const thickness = Math.max(1.5, mark.r * 0.45);
        cover = 1 - smoothstep(thickness / 2 - 0.6, thickness / 2 + 0.6, Math.abs(d - (mark.r - thickness / 2)));
      } else {
        cover = 1 - smoothstep(mark.r - 1.2, mark.r + 0.4, d);
      }
      if (mark.dot) {
        const dd = Math.hypot(x + 0.5 - (mark.cx + mark.dot.dx), y + 0.5 - (mark.cy + mark.dot.dy));
        cover = Math.max(cover, 1 - smoothstep(mark.dot.r - 0.7, mark.dot.r + 0.5, dd));
      }
      const a = cover * mark.strength;
      if (a <= 0) continue;
      const o = (y * width + x) * 3;
      for (let c = 0; c < 3; c++) rgb[o + c] = rgb[o + c]! * (1 - a) + mark.colour[c]! * a;
    }
  }
}

function markBox(mark: Mark, width: number, height: number): Box {
  let x0 = mark.cx - mark.r;
  let x1 = mark.cx + mark.r;
  let y0 = mark.cy - mark.r;
  let y1 = mark.cy + mark.r;
  if (mark.dot) {
    x0 = Math.min(x0, mark.cx + mark.dot.dx - mark.dot.r);
    x1 = Math.max(x1, mark.cx + mark.dot.dx + mark.dot.r);
    y0 = Math.min(y0, mark.cy + mark.dot.dy - mark.dot.r);
    y1 = Math.max(y1, mark.cy + mark.dot.dy + mark.dot.r);
  }
  const bx = Math.max(0, Math.floor(x0));
  const by = Math.max(0, Math.floor(y0));
  return { x: bx, y: by, width: Math.min(width, Math.ceil(x1)) - bx, height: Math.min(height, Math.ceil(y1)) - by };
}

/** Generate one cell. Deterministic for a given rng state. */
export function generateCell(rng: Rng, label: CellLabel): SyntheticCell {
  const size = rng.int(96, 160);
  const width = Math.round(size * rng.uniform(0.9, 1.1));
  const height = Math.round(size * rng.uniform(0.9, 1.1));
  const cx = width / 2 + rng.uniform(-3, 3);
  const cy = height / 2 + rng.uniform(-3, 3);
  const rx = (width / 2) * rng.uniform(0.82, 0.94);
  const ry = (height / 2) * rng.uniform(0.82, 0.94);
  const tilt = rng.uniform(0, Math.PI);
  const cosT = Math.cos(tilt);
  const sinT = Math.sin(tilt);
  // Stain colour of the red cell: pink to salmon, varying between "slides".
  const base: [number, number, number] = [rng.uniform(185, 230), rng.uniform(105, 150), rng.uniform(120, 165)];
  const brightness = rng.uniform(0.85, 1.1);
  // Low-frequency texture: a few random plane waves.
  const waves = Array.from({ length: 4 }, () => ({ fx: rng.uniform(-0.15, 0.15), fy: rng.uniform(-0.15, 0.15), ph: rng.uniform(0, 6.28), amp: rng.uniform(3, 9) }));
  const rgb = new Float32Array(width * height * 3);
  for (let y = 0; y < height; y++) {
    for (let x = 0; x < width; x++) {
      const dx = x + 0.5 - cx;
      const dy = y + 0.5 - cy;
      const u = (dx * cosT + dy * sinT) / rx;
      const v = (-dx * sinT + dy * cosT) / ry;
      const rho = Math.sqrt(u * u + v * v);
      const inside = 1 - smoothstep(0.97, 1.02, rho);
      if (inside <= 0) continue;
      let tex = 0;
      for (const w of waves) tex += w.amp * Math.sin(w.fx * x + w.fy * y + w.ph);
      // Central pallor of a red cell and a slightly darker rim.
      const shade = brightness * (1 + 0.08 * smoothstep(0.55, 0.0, rho) - 0.12 * smoothstep(0.75, 0.98, rho));
      const o = (y * width + x) * 3;
      for (let c = 0; c < 3; c++) rgb[o + c] = inside * Math.max(0, (base[c]! + tex) * shade + rng.normal() * 3);
    }
  }
  const boxes: Box[] = [];
  const placeInside = (maxRho: number) => {
    const a = rng.uniform(0, 2 * Math.PI);
    const r = Math.sqrt(rng.next()) * maxRho;
    const u = Math.cos(a) * r * rx;
    const v = Math.sin(a) * r * ry;
    return { x: cx + u * cosT - v * sinT, y: cy + u * sinT + v * cosT };
  };
  if (label === 'Parasitized') {
    const n = rng.next() < 0.6 ? 1 : rng.next() < 0.7 ? 2 : 3;
    for (let i = 0; i < n; i++) {
      const p = placeInside(0.62);
      const r = rng.uniform(6, 10) * (size / 128);
      const dotAngle = rng.uniform(0, 2 * Math.PI);
      const mark: Mark = {
        cx: p.x,
        cy: p.y,
        r,
        kind: 'ring',
        colour: [rng.uniform(60, 100), rng.uniform(20, 50), rng.uniform(90, 130)],
        strength: rng.uniform(0.75, 0.95),
        dot: { dx: Math.cos(dotAngle) * r * 0.8, dy: Math.sin(dotAngle) * r * 0.8, r: Math.max(1.6, r * 0.35) },
      };
      paint(rgb, width, height, mark);
      boxes.push(markBox(mark, width, height));
    }
  }
  // Distractors on both classes, so that "any purple" is not the answer.
  const distractors = rng.next() < 0.55 ? rng.int(1, 2) : 0;
  for (let i = 0; i < distractors; i++) {
    if (rng.next() < 0.6) {
      const p = placeInside(0.7);
      paint(rgb, width, height, {
        cx: p.x,
        cy: p.y,
        r: rng.uniform(7, 14) * (size / 128),
        kind: 'smudge',
        colour: [rng.uniform(160, 190), rng.uniform(100, 130), rng.uniform(150, 185)],
        strength: rng.uniform(0.35, 0.6),
        dot: null,
      });
    } else {
      // Stain debris sitting on the rim of the cell.
      const a = rng.uniform(0, 2 * Math.PI);
      const u = Math.cos(a) * rx * 0.97;
      const v = Math.sin(a) * ry * 0.97;
      paint(rgb, width, height, {
        cx: cx + u * cosT - v * sinT,
        cy: cy + u * sinT + v * cosT,
        r: rng.uniform(2, 4) * (size / 128),
        kind: 'smudge',
        colour: [rng.uniform(110, 150), rng.uniform(70, 100), rng.uniform(120, 160)],
        strength: rng.uniform(0.3, 0.55),
        dot: null,
      });
    }
  }
  const out = new Uint8Array(rgb.length);
  for (let i = 0; i < rgb.length; i++) out[i] = Math.max(0, Math.min(255, Math.round(rgb[i]!)));
  return { label, rgb: out, width, height, boxes };
}

/** A labelled set of cells: half parasitized by default, shuffled deterministically. */
export function* generateCells(count: number, seed: number, parasitizedFraction = 0.5): Generator<SyntheticCell & { index: number }> {
  const rng = createRng(seed);
  for (let index = 0; index < count; index++) {
    const label: CellLabel = rng.next() < parasitizedFraction ? 'Parasitized' : 'Uninfected';
    yield { ...generateCell(rng, label), index };
  }
}
