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

/**
 * Keeps the largest 4-connected piece of a 0/1 mask in place (the rest set to 0); returns how many pixels were cleared.
 * @example keepLargestPiece(new Uint8Array([1, 0, 1, 1]), 4, 1) // 1 (the lone pixel), mask now [0, 0, 1, 1]
 */
export function keepLargestPiece(mask: Uint8Array, width: number, height: number): number {
  const piece = new Int32Array(width * height).fill(-1);
  const sizes: number[] = [];
  const stack: number[] = [];
  for (let i = 0; i < width * height; i++) {
    if (!mask[i] || piece[i]! >= 0) continue;
    const id = sizes.length;
    let size = 0;
    piece[i] = id;
    stack.push(i);
    while (stack.length > 0) {
      const j = stack.pop()!;
      size++;
      const x = j % width;
      for (const k of [x > 0 ? j - 1 : -1, x < width - 1 ? j + 1 : -1, j - width, j + width]) {
        if (k < 0 || k >= width * height || !mask[k] || piece[k]! >= 0) continue;
        piece[k] = id;
        stack.push(k);
      }
    }
    sizes.push(size);
  }
  if (sizes.length <= 1) return 0;
  const best = sizes.indexOf(Math.max(...sizes));
  let cleared = 0;
  for (let i = 0; i < width * height; i++) {
    if (mask[i] && piece[i] !== best) {
      mask[i] = 0;
      cleared++;
    }
  }
  return cleared;
}
