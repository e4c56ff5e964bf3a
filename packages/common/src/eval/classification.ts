import { InvalidParameterError } from '../errors.js';

/** One labelled prediction: the true class, the predicted (argmax) class, and P(positive class). */
export interface LabelledPrediction {
  truth: string;
  predicted: string;
  /** Probability of the positive class. */
  probability: number;
  /** Probability of the predicted class (for calibration). */
  confidence: number;
  /** Patient / slide, when a group pattern was given. */
  group?: string;
}

export interface BinaryScores {
  images: number;
  accuracy: number;
  /** Sensitivity on the positive class; null when no image is of the positive class (nothing to recall). */
  recall: number | null;
  /** Null when every image is of the positive class (nothing to be specific about). */
  specificity: number | null;
  /** Null when nothing was called positive. */
  precision: number | null;
  /** `confusion[truth][predicted]`. */
  confusion: Record<string, Record<string, number>>;
}

export interface ClassificationReport extends BinaryScores {
  positiveClass: string;
  /** Area under the ROC curve of P(positive) (ties counted half); null without both classes. */
  rocAuc: number | null;
  /** Expected calibration error of the predicted class's probability, 10 equal-width bins. */
  ece: number;
  /**
   * The ROC curve's best recall at specificity ≥ 0.97 (`recallAtSpecificity`), read off these images: what a
   * threshold chosen on them would give — an upper bound for a threshold chosen beforehand. Null without both classes.
   */
  recallAtSpecificity: { specificity: number; recall: number; threshold: number } | null;
  /** The same scores at the model's screening threshold, when it has one. */
  screening?: BinaryScores & { threshold: number };
  /** Per patient / slide (when groups are known): images, accuracy, recall (null without positives), specificity. */
  groups?: Record<string, { images: number; positives: number; accuracy: number; recall: number | null; specificity: number | null }>;
}

function scores(rows: LabelledPrediction[], positiveClass: string, call: (r: LabelledPrediction) => string, classes: string[]): BinaryScores {
  const confusion: Record<string, Record<string, number>> = Object.fromEntries(classes.map((t) => [t, Object.fromEntries(classes.map((p) => [p, 0]))]));
  let tp = 0;
  let fn = 0;
  let tn = 0;
  let fp = 0;
  let correct = 0;
  for (const r of rows) {
    const p = call(r);
    confusion[r.truth] ??= {};
    confusion[r.truth]![p] = (confusion[r.truth]![p] ?? 0) + 1;
    if (p === r.truth) correct++;
    const isPos = r.truth === positiveClass;
    const saidPos = p === positiveClass;
    if (isPos && saidPos) tp++;
    else if (isPos) fn++;
    else if (saidPos) fp++;
    else tn++;
  }
  // A rate with no denominator is unknown, not 0: a folder of infected cells has no specificity to report.
  const div = (a: number, b: number) => (b > 0 ? a / b : null);
  return { images: rows.length, accuracy: rows.length ? correct / rows.length : 0, recall: div(tp, tp + fn), specificity: div(tn, tn + fp), precision: div(tp, tp + fp), confusion };
}

/** ROC AUC by ranks (Mann–Whitney U): the chance a random positive scores above a random negative; null without both. */
export function rocAuc(probabilities: ArrayLike<number>, positive: ArrayLike<boolean>): number | null {
  const pos: number[] = [];
  const neg: number[] = [];
  for (let i = 0; i < probabilities.length; i++) (positive[i] ? pos : neg).push(probabilities[i]!);
  if (pos.length === 0 || neg.length === 0) return null;
  const all = [...pos.map((v) => ({ v, p: true })), ...neg.map((v) => ({ v, p: false }))].sort((a, b) => a.v - b.v);
  let rankSum = 0;
  for (let i = 0; i < all.length; ) {
    let j = i;
    while (j < all.length && all[j]!.v === all[i]!.v) j++;
    const rank = (i + j + 1) / 2; // mean of ranks i+1 … j
    for (let k = i; k < j; k++) if (all[k]!.p) rankSum += rank;
    i = j;
  }
  return (rankSum - (pos.length * (pos.length + 1)) / 2) / (pos.length * neg.length);
}

/** The specificity at which `classificationReport` reads the ROC curve's recall (issue #9's screening target). */
export const ROC_SPECIFICITY = 0.97;

/**
 * The highest recall of any threshold whose specificity is at least `minSpecificity` (pure): calling positive every
 * image with P(positive) above the threshold, where the threshold is the (k+1)-th highest negative score and k the
 * false positives `minSpecificity` allows. Null without positives or negatives.
 * @example recallAtSpecificity([0.9, 0.8, 0.3, 0.1], [true, true, false, false], 0.97) // { recall: 1, specificity: 1, threshold: 0.3 }
 */
export function recallAtSpecificity(probabilities: ArrayLike<number>, positive: ArrayLike<boolean>, minSpecificity: number): { specificity: number; recall: number; threshold: number } | null {
  if (!(minSpecificity >= 0 && minSpecificity <= 1)) throw new InvalidParameterError('minSpecificity', 'a number in [0, 1]', minSpecificity);
  const pos: number[] = [];
  const neg: number[] = [];
  for (let i = 0; i < probabilities.length; i++) (positive[i] ? pos : neg).push(probabilities[i]!);
  if (pos.length === 0 || neg.length === 0) return null;
  neg.sort((a, b) => b - a);
  // Floating-point care: 3 % of 100 negatives is 3 false positives, not 2.9999….
  const allowed = Math.floor((1 - minSpecificity) * neg.length + 1e-9);
  const threshold = allowed >= neg.length ? Number.NEGATIVE_INFINITY : neg[allowed]!;
  const falsePositives = neg.filter((v) => v > threshold).length;
  return { specificity: 1 - falsePositives / neg.length, recall: pos.filter((v) => v > threshold).length / pos.length, threshold };
}

/** Expected calibration error: |accuracy − confidence| per equal-width confidence bin, weighted by the bin's share. */
export function expectedCalibrationError(confidence: ArrayLike<number>, correct: ArrayLike<boolean>, bins = 10): number {
  if (confidence.length === 0) return 0;
  const sumConf = new Array<number>(bins).fill(0);
  const sumAcc = new Array<number>(bins).fill(0);
  const count = new Array<number>(bins).fill(0);
  for (let i = 0; i < confidence.length; i++) {
    const b = Math.min(bins - 1, Math.floor(confidence[i]! * bins));
    sumConf[b]! += confidence[i]!;
    sumAcc[b]! += correct[i] ? 1 : 0;
    count[b]!++;
  }
  let ece = 0;
  for (let b = 0; b < bins; b++) if (count[b]) ece += (count[b]! / confidence.length) * Math.abs(sumAcc[b]! / count[b]! - sumConf[b]! / count[b]!);
  return ece;
}

/**
 * Classification scores of labelled predictions: accuracy, recall and specificity of the positive class, ROC AUC,
 * calibration, the confusion matrix; at the screening threshold too when given; per group when groups are known.
 * @example classificationReport(rows, ['Parasitized', 'Uninfected'], 'Parasitized', 0.21)
 */
export function classificationReport(rows: LabelledPrediction[], classes: string[], positiveClass: string, screeningThreshold?: number): ClassificationReport {
  if (!classes.includes(positiveClass)) throw new InvalidParameterError('positiveClass', `one of ${classes.join(', ')}`, positiveClass);
  const negativeClass = classes.find((c) => c !== positiveClass)!;
  const base = scores(rows, positiveClass, (r) => r.predicted, classes);
  const report: ClassificationReport = {
    ...base,
    positiveClass,
    rocAuc: rocAuc(rows.map((r) => r.probability), rows.map((r) => r.truth === positiveClass)),
    ece: expectedCalibrationError(rows.map((r) => r.confidence), rows.map((r) => r.predicted === r.truth)),
    recallAtSpecificity: recallAtSpecificity(rows.map((r) => r.probability), rows.map((r) => r.truth === positiveClass), ROC_SPECIFICITY),
  };
  if (screeningThreshold !== undefined) {
    report.screening = { ...scores(rows, positiveClass, (r) => (r.probability >= screeningThreshold ? positiveClass : classes.length === 2 ? negativeClass : r.predicted), classes), threshold: screeningThreshold };
  }
  if (rows.some((r) => r.group !== undefined)) {
    const byGroup = new Map<string, LabelledPrediction[]>();
    for (const r of rows) byGroup.set(r.group ?? '?', [...(byGroup.get(r.group ?? '?') ?? []), r]);
    report.groups = Object.fromEntries(
      [...byGroup.entries()].sort(([a], [b]) => (a < b ? -1 : 1)).map(([g, list]) => {
        const s = scores(list, positiveClass, (r) => r.predicted, classes);
        const positives = list.filter((r) => r.truth === positiveClass).length;
        return [g, { images: list.length, positives, accuracy: s.accuracy, recall: s.recall, specificity: s.specificity }];
      }),
    );
  }
  return report;
}
