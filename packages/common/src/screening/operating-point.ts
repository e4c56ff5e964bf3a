import { z } from 'zod';
import { InvalidParameterError } from '../errors.js';

/** A screening operating point: call an image positive when P(positive class) ≥ threshold. */
export const screeningSchema = z.object({
  positiveClass: z.string(),
  threshold: z.number().min(0).max(1),
  /** The recall the threshold was chosen for, on the validation images. */
  targetRecall: z.number().gt(0).lte(1),
  /** What the threshold gives on those validation images. */
  validation: z.object({ images: z.number().int().nonnegative(), recall: z.number(), specificity: z.number() }),
});
export type Screening = z.infer<typeof screeningSchema>;

/** The class a screen looks for by default: `Parasitized` when the classes have it, else the first class. */
export const defaultPositiveClass = (classNames: readonly string[]): string => (classNames.includes('Parasitized') ? 'Parasitized' : classNames[0]!);

/**
 * A threshold on P(positive) whose recall on these images is at least `targetRecall` (missing an infected cell is the
 * costly error in screening): midway between the score that reaches the recall and the next lower score, with the
 * recall and specificity it gives. With no positive image the threshold is 0.5.
 * @example operatingPoint([0.9, 0.2, 0.7], [true, false, true], 0.98) // { threshold: 0.45, recall: 1, specificity: 1 }
 */
export function operatingPoint(probabilities: ArrayLike<number>, positive: ArrayLike<boolean>, targetRecall: number): { threshold: number; recall: number; specificity: number } {
  if (!(targetRecall > 0 && targetRecall <= 1)) throw new InvalidParameterError('targetRecall', 'a number in (0, 1]', targetRecall);
  if (probabilities.length !== positive.length) throw new InvalidParameterError('positive', `${probabilities.length} labels`, positive.length);
  const pos: number[] = [];
  const neg: number[] = [];
  for (let i = 0; i < probabilities.length; i++) (positive[i] ? pos : neg).push(probabilities[i]!);
  pos.sort((a, b) => b - a);
  let threshold = 0.5;
  if (pos.length > 0) {
    const kth = pos[Math.max(0, Math.ceil(targetRecall * pos.length) - 1)]!;
    // Midway to the next lower score: another engine's probabilities (ONNX Runtime vs TensorFlow.js, ~1e-6 apart)
    // must not flip the image that sets the threshold.
    let below = 0;
    for (let i = 0; i < probabilities.length; i++) if (probabilities[i]! < kth && probabilities[i]! > below) below = probabilities[i]!;
    threshold = (kth + below) / 2;
  }
  const recall = pos.length === 0 ? 1 : pos.filter((p) => p >= threshold).length / pos.length;
  const specificity = neg.length === 0 ? 1 : neg.filter((p) => p < threshold).length / neg.length;
  return { threshold, recall, specificity };
}
