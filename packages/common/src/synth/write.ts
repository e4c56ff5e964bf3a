import { mkdir, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { encodePng } from '../images/decode.js';
import type { Box } from '../cam/localize.js';
import { generateCells } from './cells.js';

export interface SyntheticIndex {
  /** Relative path → ground-truth parasite boxes (original pixels). */
  boxes: Record<string, Box[]>;
  counts: { Parasitized: number; Uninfected: number };
  seed: number;
}

/**
 * Write a synthetic data set in the seed's layout: `<dir>/Parasitized/*.png`, `<dir>/Uninfected/*.png`, and the
 * ground truth as `<dir>/boxes.json`. File names carry a synthetic "patient" prefix (`S<n>_`), as the NIH names
 * carry `C<n>_`, so patient-level splits can be exercised.
 * @example await writeSyntheticDataset('/tmp/cells', { count: 200, seed: 1 });
 */
export async function writeSyntheticDataset(dir: string, options: { count: number; seed: number; parasitizedFraction?: number; patients?: number }): Promise<SyntheticIndex> {
  const patients = options.patients ?? 20;
  await mkdir(join(dir, 'Parasitized'), { recursive: true });
  await mkdir(join(dir, 'Uninfected'), { recursive: true });
  const index: SyntheticIndex = { boxes: {}, counts: { Parasitized: 0, Uninfected: 0 }, seed: options.seed };
  const pending: Promise<void>[] = [];
  for (const cell of generateCells(options.count, options.seed, options.parasitizedFraction)) {
    const rel = `${cell.label}/S${cell.index % patients}_cell_${String(cell.index).padStart(6, '0')}.png`;
    index.boxes[rel] = cell.boxes;
    index.counts[cell.label]++;
    pending.push(encodePng(cell.rgb, cell.width, cell.height).then((png) => writeFile(join(dir, rel), png)));
    if (pending.length >= 16) await Promise.all(pending.splice(0));
  }
  await Promise.all(pending);
  await writeFile(join(dir, 'boxes.json'), JSON.stringify(index));
  return index;
}
