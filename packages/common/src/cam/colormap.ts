import { InvalidParameterError } from '../errors.js';
import type { Box } from './localize.js';

const clamp01 = (v: number) => (v < 0 ? 0 : Math.min(v , 1));

/** The jet colour of a value in [0, 1] (blue → cyan → yellow → red), as three bytes. */
export function jet(value: number): [number, number, number] {
  const v = clamp01(value);
  return [
    Math.round(255 * clamp01(1.5 - Math.abs(4 * v - 3))),
    Math.round(255 * clamp01(1.5 - Math.abs(4 * v - 2))),
    Math.round(255 * clamp01(1.5 - Math.abs(4 * v - 1))),
  ];
}

// 256-entry lookup table: the heatmap of a megapixel image is one table read per pixel.
const JET_LUT = (() => {
  const lut = new Uint8Array(256 * 3);
  for (let i = 0; i < 256; i++) lut.set(jet(i / 255), i * 3);
  return lut;
})();

/** Interleaved RGB heatmap of a normalised map (values in [0, 1]). */
export function heatmapRgb(map: Float32Array): Uint8Array {
  const out = new Uint8Array(map.length * 3);
  for (let i = 0; i < map.length; i++) {
    const idx = Math.round(clamp01(map[i]!) * 255) * 3;
    out[i * 3] = JET_LUT[idx]!;
    out[i * 3 + 1] = JET_LUT[idx + 1]!;
    out[i * 3 + 2] = JET_LUT[idx + 2]!;
  }
  return out;
}

/** `alpha × heat + (1 − alpha) × image` per byte (seed: alpha 0.3). Both interleaved RGB of equal length. */
export function blend(image: Uint8Array, heat: Uint8Array, alpha = 0.3): Uint8Array {
  if (image.length !== heat.length) throw new InvalidParameterError('heat', `length ${image.length}`, heat.length);
  if (!(alpha >= 0 && alpha <= 1)) throw new InvalidParameterError('alpha', 'a number in [0, 1]', alpha);
  const out = new Uint8Array(image.length);
  for (let i = 0; i < image.length; i++) out[i] = Math.round(alpha * heat[i]! + (1 - alpha) * image[i]!);
  return out;
}

/** Draw box outlines into an interleaved RGB buffer in place. */
export function drawBoxes(rgb: Uint8Array, width: number, height: number, boxes: Box[], colour: [number, number, number] = [255, 255, 255], thickness = 1): Uint8Array {
  const put = (x: number, y: number) => {
    if (x < 0 || y < 0 || x >= width || y >= height) return;
    const o = (y * width + x) * 3;
    rgb[o] = colour[0];
    rgb[o + 1] = colour[1];
    rgb[o + 2] = colour[2];
  };
  for (const b of boxes) {
    const x1 = b.x + b.width - 1;
    const y1 = b.y + b.height - 1;
    for (let t = 0; t < thickness; t++) {
      for (let x = b.x; x <= x1; x++) {
        put(x, b.y + t);
        put(x, y1 - t);
      }
      for (let y = b.y; y <= y1; y++) {
        put(b.x + t, y);
        put(x1 - t, y);
      }
    }
  }
  return rgb;
}
