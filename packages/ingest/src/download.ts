// A finished batch's stored files (result lines, per-cell JSON and images, field answers, GeoJSON, Deep Zoom
// pyramids) copied to a local folder: the keys in result lines' `outputs` become paths under that folder.
import { mkdir, stat } from 'node:fs/promises';
import { dirname, relative, resolve, sep } from 'node:path';
import { z } from 'zod';
import { CamflowError, InvalidParameterError, keys, mapLimit, parseWith, type ObjectStore } from '@camflow/common/core';

/**
 * What can be downloaded, by kind: `results` (results.jsonl, summary.json), the per-cell outputs a batch was asked for
 * (`json`, `heatmap`, `overlay`: the names of `--outputs`), `fields` (each field's field.json and cells.geojson) and
 * `tiles` (each field's Deep Zoom descriptors and tiles: the bulk of a slide's bytes).
 */
export const downloadKindSchema = z.enum(['results', 'json', 'heatmap', 'overlay', 'fields', 'tiles']);
export type DownloadKind = z.infer<typeof downloadKindSchema>;
export const DOWNLOAD_KINDS = downloadKindSchema.options;

/** `--only` as a user writes it: a comma list of kinds. */
export function parseDownloadKinds(value: string, field: string): DownloadKind[] {
  const kinds = value.split(',').map((k) => k.trim()).filter(Boolean);
  if (!kinds.length) throw new InvalidParameterError(field, `a comma list of ${DOWNLOAD_KINDS.join(', ')}`, value);
  return kinds.map((k) => parseWith(downloadKindSchema, k, field));
}

/**
 * The kind of a stored result file, from its path under the batch's prefix; `undefined` for the workers' own records
 * (`chunks/`: the parts results.jsonl was assembled from).
 * @example resultFileKind('fields/i0001/heatmap_files/9/0_0.png') // 'tiles'
 */
export function resultFileKind(path: string): DownloadKind | 'other' | undefined {
  if (path.startsWith('chunks/')) return undefined;
  if (path === 'results.jsonl' || path === 'summary.json') return 'results';
  if (path.startsWith('fields/')) return /\.dzi$|_files\//.test(path) ? 'tiles' : 'fields';
  if (path.endsWith('.heatmap.png')) return 'heatmap';
  if (path.endsWith('.overlay.png')) return 'overlay';
  if (path.endsWith('.json')) return 'json';
  return 'other';
}

export interface DownloadReport {
  batchId: string;
  out: string;
  /** Files copied by this run, and their bytes. */
  files: number;
  bytes: number;
  /** Files already in the folder with the stored size (an earlier run's): kept, not copied again. */
  kept: number;
}

export interface DownloadOptions {
  /** Kinds to copy; all when absent (files of a kind this version does not know included). */
  only?: readonly DownloadKind[] | undefined;
  /** Objects copied at once (default 8). */
  concurrency?: number;
  onProgress?: (report: DownloadReport) => void;
}

/**
 * Copy a finished batch's files to `out` (created when missing), a page of keys at a time: memory is one listing page
 * and `concurrency` streams, whatever the batch's size. A file already there with the stored size is kept, so a run
 * cut short is resumed by running it again; an interrupted copy leaves only a `.part` file. `undefined` when the batch
 * has no results yet (unknown or not finished: the caller says which).
 */
export async function downloadBatchFiles(store: ObjectStore, batchId: string, out: string, options: DownloadOptions = {}): Promise<DownloadReport | undefined> {
  if (!(await store.exists(keys.resultsJsonl(batchId)))) return undefined;
  const root = resolve(out);
  const prefix = keys.resultPrefix(batchId);
  const wanted = (path: string) => {
    const kind = resultFileKind(path);
    return kind !== undefined && (!options.only || (kind !== 'other' && options.only.includes(kind)));
  };
  const report: DownloadReport = { batchId, out: root, files: 0, bytes: 0, kept: 0 };
  if ((await stat(root).catch(() => undefined))?.isDirectory() === false) throw new InvalidParameterError('--out', 'a folder (made when missing)', `${out} (a file)`);
  await mkdir(root, { recursive: true });
  for await (const page of store.listPages(prefix)) {
    const made = new Set<string>();
    await mapLimit(page.filter((o) => wanted(o.key.slice(prefix.length))), options.concurrency ?? 8, async ({ key, size }) => {
      const file = resolve(root, key.slice(prefix.length));
      // Keys are the workers' own, but the bucket may be shared: nothing is written outside the folder.
      const inside = relative(root, file);
      if (inside.startsWith('..') || inside.startsWith(sep) || inside === '') throw new CamflowError('UNSAFE_KEY', `stored key ${key} would be written outside ${root}: not downloaded`);
      const there = await stat(file).catch(() => undefined);
      if (there?.isFile() && there.size === size) {
        report.kept++;
        return;
      }
      const folder = dirname(file);
      if (!made.has(folder)) {
        await mkdir(folder, { recursive: true });
        made.add(folder);
      }
      // Read after the await: `report.bytes += await …` would add to the total as it was before the copy began.
      const bytes = await store.download(key, file);
      report.bytes += bytes;
      report.files++;
    });
    options.onProgress?.(report);
  }
  return report;
}
