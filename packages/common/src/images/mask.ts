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

/**
 * Fills the holes of a 0/1 mask in place: every 0 pixel that no 4-connected path of 0 pixels joins to the image's
 * border becomes 1. Returns how many were filled.
 * @example fillMaskHoles(new Uint8Array([1, 1, 1, 1, 0, 1, 1, 1, 1]), 3, 3) // 1
 */
export function fillMaskHoles(mask: Uint8Array, width: number, height: number): number {
  const outside = new Uint8Array(width * height);
  const stack: number[] = [];
  const visit = (i: number) => {
    if (mask[i] || outside[i]) return;
    outside[i] = 1;
    stack.push(i);
  };
  for (let x = 0; x < width; x++) {
    visit(x);
    visit((height - 1) * width + x);
  }
  for (let y = 0; y < height; y++) {
    visit(y * width);
    visit(y * width + width - 1);
  }
  while (stack.length > 0) {
    const i = stack.pop()!;
    const x = i % width;
    if (x > 0) visit(i - 1);
    if (x < width - 1) visit(i + 1);
    if (i >= width) visit(i - width);
    if (i + width < width * height) visit(i + width);
  }
  let filled = 0;
  for (let i = 0; i < width * height; i++) {
    if (mask[i] || outside[i]) continue;
    mask[i] = 1;
    filled++;
  }
  return filled;
}
