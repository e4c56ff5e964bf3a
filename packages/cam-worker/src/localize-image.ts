import {
  checkTarget,
  blend,
  camForClass,
  drawBoxes,
  heatmapRgb,
  localize,
  softmax,
  type CamOptions,
  type Prediction,
  type Region,
  type RgbImage,
  type Screening,
  camAtSize,
} from '@camflow/common';

/** The localization of one class on one image, in original-image pixels. */
export interface ClassLocalization {
  class: string;
  classIndex: number;
  /** The paper's box: the largest connected region above `fraction × max`. */
  box: Region | null;
  /** Every region of at least `minArea` pixels, largest first. */
  regions: Region[];
  /** Where the CAM peaks (pointing game). */
  peak: { x: number; y: number };
  /** The raw CAM at feature resolution (`featureSize`), before upsampling and normalisation. */
  featureCam: number[];
}

export interface ImageLocalization {
  predicted: { index: number; label: string; probability: number };
  probabilities: Record<string, number>;
  logits: number[];
  cams: ClassLocalization[];
  /** Normalised CAM of the first target class at original resolution (for heatmaps and metrics). */
  map: Float32Array;
  /** Feature-map resolution of the CAMs. */
  featureSize: { width: number; height: number };
}

/** Which classes to map: the predicted one, all, or one by name. */
export function targetClasses(target: string, predicted: number, classNames: string[]): number[] {
  if (target === 'predicted') return [predicted];
  // The predicted class first: the heatmap and overlay show the first target.
  if (target === 'all') return [predicted, ...classNames.map((_, i) => i).filter((i) => i !== predicted)];
  checkTarget(target, classNames);
  return [classNames.indexOf(target)];
}

/**
 * Pure CAM post-processing of one prediction: softmax, CAM of each target class, bilinear upsampling to the
 * original size, min-max normalisation, restriction to the cell when a `foreground` mask is given (see
 * `cellForeground`), and the paper's box rule.
 */
export function localizeImage(prediction: Prediction, classifierWeights: Float32Array, classNames: string[], width: number, height: number, options: CamOptions, foreground?: Uint8Array): ImageLocalization {
  const probs = softmax(prediction.logits);
  let predicted = 0;
  for (let i = 1; i < probs.length; i++) if (probs[i]! > probs[predicted]!) predicted = i;
  const f = prediction.features;
  let first: Float32Array | undefined;
  const cams = targetClasses(options.target, predicted, classNames).map((c) => {
    const cam = camForClass(f, classifierWeights, classNames.length, c);
    const { map, peak: best, max } = camAtSize(cam, f.height, f.width, height, width, foreground);
    first ??= map;
    const { box, regions } = localize(map, width, height, { fraction: options.fraction, minArea: options.minArea, max });
    const featureCam = Array.from(cam, (v) => Math.round(v * 1e5) / 1e5);
    return { class: classNames[c]!, classIndex: c, box, regions, peak: { x: best % width, y: Math.floor(best / width) }, featureCam };
  });
  return {
    predicted: { index: predicted, label: classNames[predicted]!, probability: probs[predicted]! },
    probabilities: Object.fromEntries(classNames.map((n, i) => [n, probs[i]!])),
    logits: Array.from(prediction.logits),
    cams,
    map: first!,
    featureSize: { width: f.width, height: f.height },
  };
}

/** Heatmap and overlay (with the box drawn) as RGB buffers. */
export function renderImages(original: RgbImage, loc: ImageLocalization, alpha: number): { heatmap: Uint8Array; overlay: Uint8Array } {
  const heatmap = heatmapRgb(loc.map);
  const overlay = blend(original.data, heatmap, alpha);
  const box = loc.cams[0]?.box;
  if (box) drawBoxes(overlay, original.width, original.height, [box], [255, 255, 255], Math.max(1, Math.round(Math.min(original.width, original.height) / 100)));
  return { heatmap, overlay };
}

/** The screening call of one image or cell at the model's operating point. */
export function screenCall(s: Screening, probabilities: Record<string, number>) {
  const probability = probabilities[s.positiveClass] ?? 0;
  return { positiveClass: s.positiveClass, probability, threshold: s.threshold, positive: probability >= s.threshold };
}
