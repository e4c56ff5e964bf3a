/**
 * Erode a binary mask (`width × height`, non-zero = on) by a `(2r+1)²` square: a pixel stays on when every pixel
 * within `r` (Chebyshev) is on; outside the image counts as off. Two passes of a running check, rows then columns.
 * @example const inner = erodeSquare(cell, 130, 126, 5);
 */
export function erodeSquare(mask: Uint8Array, width: number, height: number, r: number): Uint8Array {
  const rows = new Uint8Array(width * height);
  for (let y = 0; y < height; y++) {
    for (let x = 0; x < width; x++) {
      let v = 1;
      for (let d = -r; d <= r && v; d++) if (x + d < 0 || x + d >= width || !mask[y * width + x + d]) v = 0;
      rows[y * width + x] = v;
    }
  }
  const out = new Uint8Array(width * height);
  for (let y = 0; y < height; y++) {
    for (let x = 0; x < width; x++) {
      let v = 1;
      for (let d = -r; d <= r && v; d++) if (y + d < 0 || y + d >= height || !rows[(y + d) * width + x]) v = 0;
      out[y * width + x] = v;
    }
  }
  return out;
}
