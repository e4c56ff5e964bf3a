import { decodeRgb } from '../images/decode.js';
import { isRefused, manifestLineSchema, parseJsonLines, type OkResult } from '../queues/contracts.js';
import { keys } from '../storage/keys.js';
import type { ObjectStore } from '../storage/object-store.js';
import { chancePointing, findStain, hitsStain, pointingTolerance } from './stain.js';

/** The CAM's pointing against the parasite stain found in each positive image's own pixels. */
export interface StainPointing {
  truth: 'stain';
  /** Positive images scored (those in the positive class's folder whose stain was found). */
  images: number;
  /** Positive images in which no stain was found (left out of `pointing`). */
  noStain: number;
  /**
   * Their names: labels the pixels do not support (a positive-class cell with no chromatin to see — on the NIH cells
   * most of the model's misses; or a faint parasite the stain finder missed). A list for a person to check.
   */
  noStainNames: string[];
  /** Served CAM peak within the tolerance (15/224 of the longer side) of a stain pixel; null with no image to score. */
  pointing: number | null;
  /** What a point drawn uniformly in the cell scores on the same images (the game's chance level); null likewise. */
  chance: number | null;
}

/** Pure: the scores from per-image outcomes. */
export function summariseStainPointing(samples: { hit: boolean; chance: number }[], noStainNames: string[]): StainPointing {
  const n = samples.length;
  return {
    truth: 'stain',
    images: n,
    noStain: noStainNames.length,
    noStainNames,
    // No positive image with stain is no measurement: never a 0 that reads as a CAM always wrong.
    pointing: n === 0 ? null : samples.filter((s) => s.hit).length / n,
    chance: n === 0 ? null : samples.reduce((a, s) => a + s.chance, 0) / n,
  };
}

/**
 * Score a finished batch's positive-class CAM peaks against the stain in their originals, read one at a time from
 * the store (memory: one image), for labelled data without truth boxes (`<class>/<file>` names).
 */
export async function stainPointingForBatch(store: ObjectStore, batchId: string, ok: OkResult[], positiveClass: string): Promise<StainPointing> {
  const manifestKey = keys.batchManifest(batchId);
  const ext = new Map<string, string>();
  for (const line of parseJsonLines((await store.get(manifestKey)).toString('utf8'), manifestLineSchema, manifestKey)) {
    if (!isRefused(line)) ext.set(line.imageId, line.ext);
  }
  const samples: { hit: boolean; chance: number }[] = [];
  const noStain: string[] = [];
  for (const r of ok) {
    if (r.name.split('/')[0] !== positiveClass || !r.name.includes('/')) continue;
    const cam = r.cams.find((c) => c.class === positiveClass);
    const e = ext.get(r.imageId);
    if (!cam || !e) continue;
    const image = await decodeRgb(await store.get(keys.original(r.sha256, e)));
    const stain = findStain(image.data, image.width, image.height);
    if (stain.boxes.length === 0) {
      noStain.push(r.name);
      continue;
    }
    const tolerance = pointingTolerance(image.width, image.height);
    samples.push({ hit: hitsStain(stain.mask, image.width, image.height, cam.peak, tolerance), chance: chancePointing(image.data, stain.mask, image.width, image.height, tolerance) });
  }
  return summariseStainPointing(samples, noStain);
}
