// `node --import tsx bench/cam-post.ts`: a cam-worker's per-image CAM post-processing (`localizeImage`, default
// options: softmax, the predicted class's CAM at the image's size, restricted to the cell, its box, regions and peak),
// against the same steps composed from the separate functions (upsampleBilinear → minMaxNormalise → restrictToMask
// → thresholdMask → connectedRegions → a peak scan), measured in the same run. Feature maps 16×16×32 with smooth,
// cell-like structure (seeded); median of 7 rounds of 3,000 images per case. One JSON line.
import { camForClass, camOptionsSchema, connectedRegions, minMaxNormalise, restrictToMask, softmax, thresholdMask, upsampleBilinear, type Prediction } from '@camflow/common';
import { localizeImage } from '../packages/cam-worker/src/localize-image.ts';

const [fh, fw, channels, perRound, rounds] = [16, 16, 32, 3000, 7];
let s = 7;
const rnd = () => (s = (s * 1103515245 + 12345) % 2147483648) / 2147483648;
const predictions: Prediction[] = Array.from({ length: 64 }, () => {
  const data = new Float32Array(fh * fw * channels);
  for (let y = 0; y < fh; y++) for (let x = 0; x < fw; x++) for (let k = 0; k < channels; k++) data[(y * fw + x) * channels + k] = Math.max(0, Math.sin(x * 0.4 + k) * Math.cos(y * 0.3 + k * 0.7) + 0.3 * rnd());
  return { logits: Float32Array.from([rnd(), rnd()]), features: { data, height: fh, width: fw, channels } };
});
const weights = Float32Array.from({ length: channels * 2 }, () => rnd() - 0.5);
const classNames = ['Parasitized', 'Uninfected'];
const options = camOptionsSchema.parse({});
const disc = (w: number, h: number) => Uint8Array.from({ length: w * h }, (_, i) => (((i % w) - w / 2) ** 2 + (Math.floor(i / w) - h / 2) ** 2 < (0.46 * w) ** 2 ? 1 : 0));

/** The same result from the separate functions (what localizeImage did before `camAtSize`). */
function composed(p: Prediction, w: number, h: number, mask?: Uint8Array): number {
  const probs = softmax(p.logits);
  const c = probs[0]! >= probs[1]! ? 0 : 1;
  const map = minMaxNormalise(upsampleBilinear(camForClass(p.features, weights, 2, c), fh, fw, h, w));
  if (mask) restrictToMask(map, mask);
  const regions = connectedRegions(thresholdMask(map, options.fraction), map, w, h);
  let best = 0;
  for (let i = 1; i < map.length; i++) if (map[i]! > map[best]!) best = i;
  Array.from(p.features.data.subarray(0, fh * fw), (v) => Math.round(v * 1e5) / 1e5);
  return (regions[0]?.area ?? 0) + best;
}
const fused = (p: Prediction, w: number, h: number, mask?: Uint8Array) => {
  const c = localizeImage(p, weights, classNames, w, h, options, mask).cams[0]!;
  return (c.box?.area ?? 0) + c.peak.y * w + c.peak.x;
};

const median = (a: number[]) => a.sort((x, y) => x - y)[a.length >> 1]!;
const out: Record<string, number | boolean> = {};
for (const [w, h, masked] of [[64, 64, false], [130, 130, true]] as const) {
  const mask = masked ? disc(w, h) : undefined;
  const times: Record<string, number[]> = { fused: [], composed: [] };
  const sums: Record<string, number> = { fused: 0, composed: 0 };
  for (let r = 0; r < rounds; r++) {
    for (const [name, f] of [['fused', fused], ['composed', composed]] as const) {
      const t0 = performance.now();
      for (let i = 0; i < perRound; i++) sums[name]! += f(predictions[i % 64]!, w, h, mask);
      times[name]!.push(((performance.now() - t0) * 1000) / perRound);
    }
  }
  const key = `${w}x${h}${masked ? '_in_cell' : ''}`;
  out[`${key}_us_per_image`] = Number(median(times.fused!).toFixed(1));
  out[`${key}_composed_us_per_image`] = Number(median(times.composed!).toFixed(1));
  out[`${key}_ratio`] = Number((median(times.composed!) / median(times.fused!)).toFixed(2));
  out[`${key}_same_boxes_and_peaks`] = sums.fused === sums.composed;
}
console.log(JSON.stringify({ bench_cam_post: out }));
