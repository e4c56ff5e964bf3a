import { InvalidParameterError } from '../errors.js';

/**
 * The cell's pixels in a crop made on black (the NIH crops, and camflow's own field crops): pixels of the model input
 * brighter than `minLevel` in any channel, grown by one input pixel (so a stained parasite on the membrane stays in),
 * sampled (nearest) at the original's resolution. Undefined when the foreground covers less than `minShare` of the
 * image or all of it: then the image is not a cell on black and no mask is applied.
 * @example const mask = cellForeground(input, 64, 142, 130);
 */
export function cellForeground(input: Uint8Array, size: number, width: number, height: number, options: { minLevel?: number; minShare?: number } = {}): Uint8Array | undefined {
  if (input.length !== size * size * 3) throw new InvalidParameterError('input', `${size}×${size}×3 bytes`, input.length);
  const minLevel = options.minLevel ?? 16;
  const minShare = options.minShare ?? 0.05;
  const small = new Uint8Array(size * size);
  let on = 0;
  for (let i = 0; i < size * size; i++) {
    if (input[i * 3]! > minLevel || input[i * 3 + 1]! > minLevel || input[i * 3 + 2]! > minLevel) {
      small[i] = 1;
      on++;
    }
  }
  if (on < minShare * size * size || on === size * size) return undefined;
  const grown = new Uint8Array(size * size);
  for (let y = 0; y < size; y++) {
    for (let x = 0; x < size; x++) {
      let v = 0;
      for (let dy = -1; dy <= 1 && !v; dy++) for (let dx = -1; dx <= 1 && !v; dx++) {
        const yy = y + dy;
        const xx = x + dx;
        if (yy >= 0 && yy < size && xx >= 0 && xx < size && small[yy * size + xx]) v = 1;
      }
      grown[y * size + x] = v;
    }
  }
  const mask = new Uint8Array(width * height);
  for (let y = 0; y < height; y++) {
    const sy = Math.min(size - 1, Math.floor(((y + 0.5) * size) / height));
    for (let x = 0; x < width; x++) mask[y * width + x] = grown[sy * size + Math.min(size - 1, Math.floor(((x + 0.5) * size) / width))]!;
  }
  return mask;
}

/** Zero a normalised map outside the mask and normalise it again to [0, 1] (in place). */
export function restrictToMask(map: Float32Array, mask: Uint8Array): Float32Array {
  if (map.length !== mask.length) throw new InvalidParameterError('mask', `${map.length} pixels`, mask.length);
  let max = 0;
  for (let i = 0; i < map.length; i++) {
    if (!mask[i]) map[i] = 0;
    else if (map[i]! > max) max = map[i]!;
  }
  if (max > 0 && max < 1) for (let i = 0; i < map.length; i++) map[i] = map[i]! / max;
  return map;
}
