import { iou, type Box } from '../cam/localize.js';

/** Cell finding scored against truth boxes: greedy one-to-one matching by IoU. */
export interface DetectionScores {
  truth: number;
  found: number;
  matched: number;
  recall: number;
  precision: number;
}

/**
 * Match found boxes to truth boxes (highest IoU first, each used once, IoU ≥ `minIou`). Truth marked `ignore` (e.g. a
 * cell mostly outside the image) is neither required nor held against a box that matches it.
 */
export function scoreDetections(found: Box[], truth: { box: Box; ignore?: boolean }[], minIou = 0.5): DetectionScores {
  const pairs: { f: number; t: number; v: number }[] = [];
  for (let f = 0; f < found.length; f++) {
    for (let t = 0; t < truth.length; t++) {
      const v = iou(found[f]!, truth[t]!.box);
      if (v >= minIou) pairs.push({ f, t, v });
    }
  }
  pairs.sort((a, b) => b.v - a.v);
  const usedF = new Set<number>();
  const usedT = new Set<number>();
  let matched = 0;
  let matchedIgnored = 0;
  for (const p of pairs) {
    if (usedF.has(p.f) || usedT.has(p.t)) continue;
    usedF.add(p.f);
    usedT.add(p.t);
    if (truth[p.t]!.ignore) matchedIgnored++;
    else matched++;
  }
  const required = truth.filter((t) => !t.ignore).length;
  const counted = found.length - matchedIgnored;
  return { truth: required, found: counted, matched, recall: required === 0 ? 1 : matched / required, precision: counted === 0 ? 1 : matched / counted };
}

/**
 * Wilson score interval for a proportion `k / n` at ~95 % (z = 1.96): well-behaved at 0 and at small n, where the
 * normal approximation is not (a field with 3 infected cells in 400).
 */
export function wilsonInterval(k: number, n: number, z = 1.959964): [number, number] {
  if (n === 0) return [0, 1];
  const p = k / n;
  const z2 = z * z;
  const centre = (p + z2 / (2 * n)) / (1 + z2 / n);
  const half = (z * Math.sqrt((p * (1 - p)) / n + z2 / (4 * n * n))) / (1 + z2 / n);
  return [Math.max(0, centre - half), Math.min(1, centre + half)];
}

/** A field's answer scored against synthetic truth: cell finding, parasitemia, and pointing on parasites. */
export interface FieldScores {
  detection: DetectionScores;
  /** Truth parasitemia over the cells wholly visible (camflow does not count cells cut by an edge). */
  truthParasitemia: number;
  parasitemia: number;
  /** Truth parasitized cells found (IoU ≥ 0.5) whose positive-class CAM peak lies in one of their parasite boxes, and how many were found. */
  pointingHits: number;
  pointingCells: number;
}

export function scoreField(
  found: { box: Box; peak: { x: number; y: number } }[],
  parasitemia: number,
  truth: { box: Box; visible: number; label: string; parasites: Box[] }[],
  positiveClass = 'Parasitized',
): FieldScores {
  const detection = scoreDetections(found.map((f) => f.box), truth.map((t) => ({ box: t.box, ignore: t.visible < 0.5 })));
  const counted = truth.filter((t) => t.visible >= 0.5);
  const whole = truth.filter((t) => t.visible >= 0.999);
  let hits = 0;
  let cells = 0;
  for (const t of counted) {
    if (t.label !== positiveClass || t.parasites.length === 0) continue;
    let best: (typeof found)[number] | undefined;
    let bestIou = 0.5;
    for (const f of found) {
      const v = iou(f.box, t.box);
      if (v >= bestIou) {
        bestIou = v;
        best = f;
      }
    }
    if (!best) continue;
    cells++;
    const p = best.peak;
    if (t.parasites.some((b) => p.x >= b.x && p.x < b.x + b.width && p.y >= b.y && p.y < b.y + b.height)) hits++;
  }
  return {
    detection,
    truthParasitemia: whole.length === 0 ? 0 : whole.filter((t) => t.label === positiveClass).length / whole.length,
    parasitemia,
    pointingHits: hits,
    pointingCells: cells,
  };
}
