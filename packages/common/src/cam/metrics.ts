import { argmax2d } from './cam.js';
import { connectedRegions, iou, thresholdMask, type Box } from './localize.js';

/** One image's normalised CAM at image resolution and its ground-truth boxes, for localization metrics. */
export interface LocalizationSample {
  cam: Float32Array;
  width: number;
  height: number;
  truth: Box[];
}

/** Pointing game: does the CAM's maximum fall inside one of the ground-truth boxes? */
export function pointingHit(sample: LocalizationSample): boolean {
  const { x, y } = argmax2d(sample.cam, sample.width);
  return sample.truth.some((b) => x >= b.x && x < b.x + b.width && y >= b.y && y < b.y + b.height);
}

/** Best IoU of a box with any of the truth boxes. */
export function bestIou(box: Box, truth: Box[]): number {
  let best = 0;
  for (const t of truth) best = Math.max(best, iou(box, t));
  return best;
}

/**
 * MaxBoxAccV2 (Choe et al., CVPR 2020): for each CAM threshold τ, an image counts as localized at IoU δ when any
 * box of any connected component of `cam > τ` overlaps a ground-truth box by at least δ. The score is the mean
 * over δ of the best accuracy over τ.
 */
export function maxBoxAccV2(
  samples: LocalizationSample[],
  options: { iouThresholds?: number[]; camThresholds?: number[] } = {},
): { score: number; perIou: Record<string, { accuracy: number; threshold: number }> } {
  const deltas = options.iouThresholds ?? [0.3, 0.5, 0.7];
  const taus = options.camThresholds ?? Array.from({ length: 100 }, (_, i) => i / 100);
  if (samples.length === 0) return { score: 0, perIou: {} };
  // hits[t][d] = images localized at threshold t and IoU d.
  const hits = taus.map(() => new Array<number>(deltas.length).fill(0));
  for (const s of samples) {
    const mask = new Uint8Array(s.cam.length);
    taus.forEach((tau, t) => {
      // The CAM is normalised to max 1, so "above tau × max" is "above tau".
      thresholdMask(s.cam, tau, mask);
      const regions = connectedRegions(mask, s.cam, s.width, s.height);
      let best = 0;
      for (const r of regions) best = Math.max(best, bestIou(r, s.truth));
      deltas.forEach((d, di) => {
        if (best >= d) hits[t]![di]!++;
      });
    });
  }
  const perIou: Record<string, { accuracy: number; threshold: number }> = {};
  let total = 0;
  deltas.forEach((d, di) => {
    let bestAcc = -1;
    let bestTau = 0;
    taus.forEach((tau, t) => {
      const acc = hits[t]![di]! / samples.length;
      if (acc > bestAcc) {
        bestAcc = acc;
        bestTau = tau;
      }
    });
    perIou[d.toFixed(1)] = { accuracy: bestAcc, threshold: bestTau };
    total += bestAcc;
  });
  return { score: total / deltas.length, perIou };
}

/** Images localized per CAM threshold τ and IoU δ: `hits[t][d]`. */
function localizationHits(samples: LocalizationSample[], deltas: number[], taus: number[]): number[][] {
  const hits = taus.map(() => new Array<number>(deltas.length).fill(0));
  for (const s of samples) {
    const mask = new Uint8Array(s.cam.length);
    taus.forEach((tau, t) => {
      thresholdMask(s.cam, tau, mask);
      let best = 0;
      for (const r of connectedRegions(mask, s.cam, s.width, s.height)) best = Math.max(best, bestIou(r, s.truth));
      deltas.forEach((d, di) => {
        if (best >= d) hits[t]![di]!++;
      });
    });
  }
  return hits;
}

/**
 * MaxBoxAccV2 with the CAM threshold chosen on a separate split (wsolevaluation's rule): the threshold that is best
 * on `choose` is scored on `score`, per IoU δ; the result is the mean over δ. Use it twice with the halves swapped
 * for a two-fold estimate.
 */
export function maxBoxAccV2HeldOut(
  choose: LocalizationSample[],
  score: LocalizationSample[],
  options: { iouThresholds?: number[]; camThresholds?: number[] } = {},
): { score: number; perIou: Record<string, { accuracy: number; threshold: number }> } {
  const deltas = options.iouThresholds ?? [0.3, 0.5, 0.7];
  const taus = options.camThresholds ?? Array.from({ length: 100 }, (_, i) => i / 100);
  if (choose.length === 0 || score.length === 0) return { score: 0, perIou: {} };
  const chosen = localizationHits(choose, deltas, taus);
  const scored = localizationHits(score, deltas, taus);
  const perIou: Record<string, { accuracy: number; threshold: number }> = {};
  let total = 0;
  deltas.forEach((d, di) => {
    let bestT = 0;
    taus.forEach((_, t) => {
      if (chosen[t]![di]! > chosen[bestT]![di]!) bestT = t;
    });
    const accuracy = scored[bestT]![di]! / score.length;
    perIou[d.toFixed(1)] = { accuracy, threshold: taus[bestT]! };
    total += accuracy;
  });
  return { score: total / deltas.length, perIou };
}
