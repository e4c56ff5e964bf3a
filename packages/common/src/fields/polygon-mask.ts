import type { Box } from '../cam/localize.js';

/**
 * The pixels of `box` (field pixels) whose centre lies inside a closed polygon (even-odd rule), as a `width × height`
 * mask (1 inside). A cell's outline, rasterised again where its label map is long gone (the field's assembly).
 * @example polygonMask([[0, 0], [10, 0], [10, 10], [0, 10]], { x: 0, y: 0, width: 10, height: 10 }) // all ones
 */
export function polygonMask(polygon: readonly (readonly [number, number])[], box: Box): Uint8Array {
  const { width: w, height: h } = box;
  const mask = new Uint8Array(w * h);
  const n = polygon.length;
  const crossings: number[] = [];
  for (let y = 0; y < h; y++) {
    const py = box.y + y + 0.5;
    crossings.length = 0;
    for (let i = 0, j = n - 1; i < n; j = i++) {
      const [xi, yi] = polygon[i]!;
      const [xj, yj] = polygon[j]!;
      if (yi > py !== yj > py) crossings.push(xi + ((py - yi) * (xj - xi)) / (yj - yi));
    }
    crossings.sort((a, b) => a - b);
    for (let k = 0; k + 1 < crossings.length; k += 2) {
      const x0 = Math.max(0, Math.ceil(crossings[k]! - box.x - 0.5));
      const x1 = Math.min(w - 1, Math.floor(crossings[k + 1]! - box.x - 0.5));
      for (let x = x0; x <= x1; x++) mask[y * w + x] = 1;
    }
  }
  return mask;
}
