import { jet } from '../cam/colormap.js';
import { InvalidParameterError } from '../errors.js';
import type { Box } from '../cam/localize.js';

/**
 * Paint one cell's normalised CAM (`box.width × box.height`, values in [0, 1]) into a field-sized RGBA heatmap, jet
 * colours, opaque on the cell's own pixels (`inCell(x, y)` in field pixels) and untouched elsewhere, so that the
 * stitched map shows each cell's CAM and the plasma stays transparent.
 */
export function paintCellHeat(rgba: Uint8Array, fieldWidth: number, box: Box, map: Float32Array, inCell: (x: number, y: number) => boolean): void {
  if (map.length !== box.width * box.height) throw new InvalidParameterError('map', `${box.width}×${box.height} values`, map.length);
  for (let y = 0; y < box.height; y++) {
    for (let x = 0; x < box.width; x++) {
      const fx = box.x + x;
      const fy = box.y + y;
      if (!inCell(fx, fy)) continue;
      const [r, g, b] = jet(map[y * box.width + x]!);
      const o = (fy * fieldWidth + fx) * 4;
      rgba[o] = r;
      rgba[o + 1] = g;
      rgba[o + 2] = b;
      rgba[o + 3] = 255;
    }
  }
}
