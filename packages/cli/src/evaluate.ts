import { camAtSize, isCellResult, iou, maxBoxAccV2, type Box, type LocalizationSample } from '@camflow/common/core';
import type { ImageResult } from '@camflow/cam-worker';

export interface LocalizationReport {
  images: number;
  accuracy: number;
  parasitized: number;
  pointingGame: number;
  locIou50: number;
  maxBoxAccV2: number;
  maxBoxAccV2PerIou: Record<string, { accuracy: number; threshold: number }>;
}

/**
 * Score a batch's results against ground truth: classification accuracy (label from the `<class>/` folder of
 * each name), and, on images with truth boxes, the pointing game, top-box IoU ≥ 0.5 and MaxBoxAccV2. The CAM is
 * rebuilt from the stored feature-resolution map exactly as the worker does (bilinear, min-max).
 */
export function evaluateLocalization(results: ImageResult[], truth: Record<string, Box[]>, positiveClass = 'Parasitized'): LocalizationReport {
  const ok = results.filter(isCellResult);
  const correct = ok.filter((r) => r.name.split('/')[0] === r.predicted.label).length;
  const samples: LocalizationSample[] = [];
  let pointing = 0;
  let iou50 = 0;
  for (const r of ok) {
    const boxes = truth[r.name];
    if (!boxes || boxes.length === 0) continue;
    // Localization is judged on the CAM of the positive class, whatever the prediction.
    const cam = r.cams.find((c) => c.class === positiveClass);
    if (!cam) throw new Error(`results carry no CAM of class ${positiveClass}: submit with --target all or ${positiveClass}`);
    const { map } = camAtSize(Float32Array.from(cam.featureCam), r.featureSize.height, r.featureSize.width, r.height, r.width);
    samples.push({ cam: map, width: r.width, height: r.height, truth: boxes });
    if (boxes.some((b) => cam.peak.x >= b.x && cam.peak.x < b.x + b.width && cam.peak.y >= b.y && cam.peak.y < b.y + b.height)) pointing++;
    if (cam.box && boxes.some((b) => iou(cam.box!, b) >= 0.5)) iou50++;
  }
  const mba = maxBoxAccV2(samples);
  const n = samples.length || 1;
  return {
    images: ok.length,
    accuracy: ok.length ? correct / ok.length : 0,
    parasitized: samples.length,
    pointingGame: pointing / n,
    locIou50: iou50 / n,
    maxBoxAccV2: mba.score,
    maxBoxAccV2PerIou: mba.perIou,
  };
}
