import { z } from 'zod';
import { InvalidParameterError } from '../errors.js';
import { iou, type Box } from '../cam/localize.js';
import { camAtSize } from '../cam/cam.js';
import { maxBoxAccV2, maxBoxAccV2HeldOut, type LocalizationSample } from '../cam/metrics.js';
import type { ImageResult, OkResult } from '../queues/contracts.js';
import { defaultPositiveClass, type Screening } from '../screening/operating-point.js';
import type { StainPointing } from './stain-pointing.js';
import { classificationReport, type ClassificationReport, type LabelledPrediction } from './classification.js';

/**
 * A truth-boxes file (`boxes.json`, `camflow eval --boxes`): boxes per image name `<class>/<file>` in the image's
 * pixels; the object may sit under `boxes` (as the synthetic sets write it, beside their counts).
 */
export const truthBoxesSchema = z.record(z.string(), z.array(z.object({ x: z.number(), y: z.number(), width: z.number().positive(), height: z.number().positive() })));
export type TruthBoxes = z.infer<typeof truthBoxesSchema>;

export interface LocalizationScores {
  /** Positive images with ground-truth boxes. */
  images: number;
  /** The served CAM peak inside a truth box. */
  pointing: number;
  /** The served box (20 %-of-max rule) at IoU ≥ 0.5 with a truth box. */
  locIou50: number;
  /** MaxBoxAccV2 with its CAM threshold chosen on the other half of the images (two folds, averaged). */
  maxBoxAccV2: number;
  maxBoxAccV2Folds: { score: number; perIou: Record<string, { accuracy: number; threshold: number }> }[];
  /** MaxBoxAccV2 with the threshold chosen on the scored images themselves (optimistic; for comparison only). */
  maxBoxAccV2InSample: number;
}

export interface EvaluationReport {
  classification: ClassificationReport;
  localization?: LocalizationScores;
  /** Pointing against the parasite stain in the pixels (labelled data without truth boxes). */
  stainPointing?: StainPointing;
  /**
   * The classification again with the positive images whose pixels show no parasite stain left out
   * (`stainPointing.noStainNames`): the scores on the labels the pixels support. Reported beside, never instead of,
   * `classification`.
   */
  stainSupported?: ClassificationReport;
  /** Results that could not be scored: failed items, or names outside a class folder of the model. */
  skipped: { name: string; why: string }[];
}

/**
 * The default patient / slide pattern of file names, for `dataset add` (patient splits) and `camflow eval` (per-patient
 * rows) alike: leading letters and digits — NIH `C100P61ThinF_…`, `C209ThinF_…`, `C37BP2_…` → `C100`, `C209`, `C37`;
 * synthetic `S0_cell_…` → `S0`.
 */
export const DEFAULT_GROUP_PATTERN = '^([A-Za-z]+\\d+)';

/**
 * A patient / slide pattern as given (`--group-pattern`, `groupPattern`), compiled: a regular expression with a capture
 * group (the patient), or an error naming `field` — never a raw SyntaxError.
 */
export function compileGroupPattern(pattern: string | undefined, field: string): RegExp {
  const expected = 'a regular expression whose first capture group is the patient or slide, e.g. ^([A-Za-z]+\\d+)';
  let group: RegExp;
  try {
    group = new RegExp(pattern ?? DEFAULT_GROUP_PATTERN);
  } catch {
    throw new InvalidParameterError(field, expected, pattern);
  }
  // Groups of the pattern: an alternative that matches the empty string reports them all.
  if (new RegExp(`${group.source}|`).exec('')!.length < 2) throw new InvalidParameterError(field, expected, pattern);
  return group;
}

/** The patient / slide of a result's name: the pattern's first capture group on the file name, if it matches. */
export function groupOf(name: string, pattern: RegExp): string | undefined {
  return pattern.exec(name.split('/').pop()!)?.[1];
}

/**
 * Score a batch's results against the truth its names carry (`<class>/<file>`): classification (with the
 * screening threshold and per group when given) and, where truth boxes exist, localization of the positive class.
 * The MaxBoxAccV2 maps are the paper's (rebuilt from `featureCam`: bilinear, min-max), so they are comparable with
 * other CAM implementations; pointing and the IoU-0.5 rate use the boxes and peaks camflow served.
 */
export function evaluateBatchResults(
  results: ImageResult[],
  classNames: string[],
  positiveClass: string,
  options: { screeningThreshold?: number; groupPattern?: RegExp; boxes?: Record<string, Box[]> } = {},
): EvaluationReport {
  const skipped: { name: string; why: string }[] = [];
  const rows: LabelledPrediction[] = [];
  const ok: OkResult[] = [];
  for (const r of results) {
    const truth = r.name.includes('/') ? r.name.split('/')[0]! : undefined;
    if (r.status !== 'ok') {
      skipped.push({ name: r.name, why: `${r.reason}: ${r.error}` });
      continue;
    }
    if (r.kind === 'field') {
      skipped.push({ name: r.name, why: 'a smear field (scored per field, not as one cell)' });
      continue;
    }
    if (!truth || !classNames.includes(truth)) {
      skipped.push({ name: r.name, why: `not inside a folder named after one of the model's classes (${classNames.join(', ')})` });
      continue;
    }
    ok.push(r);
    const group = options.groupPattern ? groupOf(r.name, options.groupPattern) : undefined;
    rows.push({ truth, predicted: r.predicted.label, probability: r.probabilities[positiveClass] ?? 0, confidence: r.predicted.probability, ...(group !== undefined ? { group } : {}) });
  }
  const classification = classificationReport(rows, classNames, positiveClass, options.screeningThreshold);
  const boxes = options.boxes;
  if (!boxes) return { classification, skipped };
  const samples: { name: string; sample: LocalizationSample; pointing: boolean; iou50: boolean }[] = [];
  for (const r of ok) {
    const truth = boxes[r.name];
    if (!truth || truth.length === 0 || r.name.split('/')[0] !== positiveClass) continue;
    const cam = r.cams.find((c) => c.class === positiveClass);
    if (!cam) continue;
    const { map } = camAtSize(Float32Array.from(cam.featureCam), r.featureSize.height, r.featureSize.width, r.height, r.width);
    const inside = (b: Box) => cam.peak.x >= b.x && cam.peak.x < b.x + b.width && cam.peak.y >= b.y && cam.peak.y < b.y + b.height;
    samples.push({ name: r.name, sample: { cam: map, width: r.width, height: r.height, truth }, pointing: truth.some(inside), iou50: !!cam.box && truth.some((b) => iou(cam.box!, b) >= 0.5) });
  }
  if (samples.length === 0) return { classification, skipped };
  samples.sort((a, b) => (a.name < b.name ? -1 : 1));
  const a = samples.filter((_, i) => i % 2 === 0).map((s) => s.sample);
  const b = samples.filter((_, i) => i % 2 === 1).map((s) => s.sample);
  const folds = [maxBoxAccV2HeldOut(a, b), maxBoxAccV2HeldOut(b, a)];
  const n = samples.length;
  return {
    classification,
    skipped,
    localization: {
      images: n,
      pointing: samples.filter((s) => s.pointing).length / n,
      locIou50: samples.filter((s) => s.iou50).length / n,
      maxBoxAccV2: b.length > 0 ? (folds[0]!.score * b.length + folds[1]!.score * a.length) / n : 0,
      maxBoxAccV2Folds: folds,
      maxBoxAccV2InSample: maxBoxAccV2(samples.map((s) => s.sample)).score,
    },
  };
}

/** `evaluateBatchResults` with a model's classes, its screening class and threshold. */
export function evaluateForModel(results: ImageResult[], model: { classNames: string[]; screening?: Screening | undefined }, options: { groupPattern?: RegExp; boxes?: Record<string, Box[]> } = {}): EvaluationReport & { positiveClass: string } {
  const positiveClass = model.screening?.positiveClass ?? defaultPositiveClass(model.classNames);
  const report = evaluateBatchResults(results, model.classNames, positiveClass, { ...options, ...(model.screening ? { screeningThreshold: model.screening.threshold } : {}) });
  return { ...report, positiveClass };
}

/**
 * Add the stain audit to a report: `stainPointing` and the classification of the results without the positive
 * images whose pixels show no stain (`stainSupported`).
 */
export function withStainAudit(
  report: EvaluationReport,
  results: ImageResult[],
  model: { classNames: string[]; screening?: Screening | undefined },
  stain: StainPointing,
  options: { groupPattern?: RegExp } = {},
): EvaluationReport {
  const doubtful = new Set(stain.noStainNames);
  const { classification } = evaluateForModel(results.filter((r) => !doubtful.has(r.name)), model, options);
  return { ...report, stainPointing: stain, stainSupported: classification };
}
