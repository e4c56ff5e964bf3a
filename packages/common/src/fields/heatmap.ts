import { jet } from '../cam/colormap.js';
import { InvalidParameterError } from '../errors.js';
import type { Box } from '../cam/localize.js';

/**
 * Paint one cell's normalised CAM (`box.width × box.height` field pixels, values in [0, 1]) into an RGBA heatmap of
 * the field at `scale` (heat pixels per field pixel; 1 for a field decoded whole, less for a whole-slide scan), jet
 * colours, opaque where the cell's own pixels are (`inCell(x, y)` in field pixels) and untouched elsewhere, so that
 * the stitched map shows each cell's CAM and the plasma stays transparent. Each value is multiplied by `gain` — the
 * cell's probability of the CAM's class — so that the colours compare across cells: a cell called uninfected stays
 * cold however its own CAM peaks (normalised alone, every cell's peak would be as hot as a parasite's).
 * @example paintCellHeat(rgba, width, box, map, inCell, { gain: cell.probabilities.Parasitized })
 */
export function paintCellHeat(rgba: Uint8Array, heatWidth: number, box: Box, map: Float32Array, inCell: (x: number, y: number) => boolean, opts: { scale?: number; gain?: number } = {}): void {
  const scale = opts.scale ?? 1;
  const gain = opts.gain ?? 1;
  if (!(gain >= 0 && gain <= 1)) throw new InvalidParameterError('gain', 'a probability in [0, 1]', gain);
  if (map.length !== box.width * box.height) throw new InvalidParameterError('map', `${box.width}×${box.height} values`, map.length);
  const heatHeight = rgba.length / 4 / heatWidth;
  const hx0 = Math.max(0, Math.floor(box.x * scale));
  const hy0 = Math.max(0, Math.floor(box.y * scale));
  const hx1 = Math.min(heatWidth, Math.ceil((box.x + box.width) * scale));
  const hy1 = Math.min(heatHeight, Math.ceil((box.y + box.height) * scale));
  for (let hy = hy0; hy < hy1; hy++) {
    const fy = Math.floor((hy + 0.5) / scale);
    const y = fy - box.y;
    if (y < 0 || y >= box.height) continue;
    for (let hx = hx0; hx < hx1; hx++) {
      const fx = Math.floor((hx + 0.5) / scale);
      const x = fx - box.x;
      if (x < 0 || x >= box.width || !inCell(fx, fy)) continue;
      const [r, g, b] = jet(map[y * box.width + x]! * gain);
      const o = (hy * heatWidth + hx) * 4;
      rgba[o] = r;
      rgba[o + 1] = g;
      rgba[o + 2] = b;
      rgba[o + 3] = 255;
    }
  }
}
