// A finished batch's stored files (result lines, per-cell JSON and images, field answers, GeoJSON, Deep Zoom
// pyramids) copied to a local folder: the keys in result lines' `outputs` become paths under that folder.
import { mkdir, opendir, rm, stat } from 'node:fs/promises';
import { dirname, isAbsolute, relative, resolve, sep } from 'node:path';
import { z } from 'zod';
import { exportBatchResults } from './results.js';
import { CamflowError, InvalidParameterError, keys, mapLimit, PART_FILE, parseWith, writeLocalFile, type ObjectStore } from '@camflow/common/core';

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
  /** Files already in the folder as an earlier run left them (the stored size and modification time): kept. */
  kept: number;
  /** Stored keys that cannot be a file under the folder (a "folder" marker, a path leading out of it): not copied. */
  skipped: number;
}

export interface DownloadOptions {
  /** Kinds to copy; all when absent (files of a kind this version does not know included). */
  only?: readonly DownloadKind[] | undefined;
  /** Objects copied at once (default 8). */
  concurrency?: number;
  onProgress?: (report: DownloadReport) => void;
  /** Told of each key skipped, with why. */
  onSkip?: (key: string, reason: string) => void;
}

/** Where a key under the batch's prefix goes in the folder, or why it cannot go there. */
export function localPath(root: string, path: string): { file: string } | { skip: string } {
  if (path === '' || path.endsWith('/')) return { skip: 'a folder marker, not a file' };
  const file = resolve(root, path);
  const inside = relative(root, file);
  // Keys are the workers' own, but the bucket may be shared: nothing is written outside the folder.
  if (inside === '' || inside === '..' || inside.startsWith(`..${sep}`) || isAbsolute(inside)) return { skip: `its path leads out of ${root}` };
  return { file };
}

/** A local file an earlier run wrote: the stored size and, where the store gives one, its time to the second. */
const sameFile = (there: { size: number; mtimeMs: number }, object: { size: number; modified?: Date | undefined }) =>
  there.size === object.size && (!object.modified || Math.floor(there.mtimeMs / 1000) === Math.floor(object.modified.getTime() / 1000));

/**
 * Copy a finished batch's files to `out` (created when missing), a page of keys at a time: memory is one listing page
 * and `concurrency` streams, whatever the batch's size. A file already there as a copy left it (the stored size and
 * modification time) is kept, so a run cut short is resumed by running it again; an interrupted copy leaves only a
 * `.part` file. A key that cannot be a file under `out` is skipped and told to `onSkip`, the rest still copied.
 * `undefined` when the batch is not finished (or unknown: the caller says which).
 */
export async function downloadBatchFiles(store: ObjectStore, batchId: string, out: string, options: DownloadOptions = {}): Promise<DownloadReport | undefined> {
  // summary.json is the finalizer's last write: before it, results.jsonl may be there while the batch is not finished.
  if (!(await store.exists(keys.resultsSummary(batchId)))) return undefined;
  const root = resolve(out);
  const prefix = keys.resultPrefix(batchId);
  const wanted = (path: string) => {
    const kind = resultFileKind(path);
    return kind !== undefined && (!options.only || (kind !== 'other' && options.only.includes(kind)));
  };
  const report: DownloadReport = { batchId, out: root, files: 0, bytes: 0, kept: 0, skipped: 0 };
  if ((await stat(root).catch(() => undefined))?.isDirectory() === false) throw new InvalidParameterError('--out', 'a folder (made when missing)', `${out} (a file)`);
  await mkdir(root, { recursive: true });
  let jsonlCopied = false;
  for await (const page of store.listPages(prefix)) {
    const made = new Set<string>();
    await mapLimit(page.filter((o) => wanted(o.key.slice(prefix.length))), options.concurrency ?? 8, async (object) => {
      const where = localPath(root, object.key.slice(prefix.length));
      if ('skip' in where) {
        report.skipped++;
        options.onSkip?.(object.key, where.skip);
        return;
      }
      const there = await stat(where.file).catch(() => undefined);
      if (there?.isFile() && sameFile(there, object)) {
        report.kept++;
        return;
      }
      const folder = dirname(where.file);
      if (!made.has(folder)) {
        await mkdir(folder, { recursive: true }).catch((error: Error) => {
          throw new CamflowError('WRITE_FAILED', `could not make the folder ${folder}: ${error.message}`, { cause: error });
        });
        made.add(folder);
      }
      // Read after the await: `report.bytes += await …` would add to the total as it was before the copy began.
      const { bytes } = await store.download(object.key, where.file);
      if (object.key === keys.resultsJsonl(batchId)) jsonlCopied = true;
      report.bytes += bytes;
      report.files++;
    });
    options.onProgress?.(report);
  }
  // Beside the lines, the same as a spreadsheet (`camflow results --format csv`; its *_file columns are paths in this
  // folder), written again whenever results.jsonl was.
  const csv = resolve(root, 'results.csv');
  if ((!options.only || options.only.includes('results')) && (jsonlCopied || !(await stat(csv).catch(() => undefined)))) {
    const exported = await exportBatchResults(store, batchId, 'csv');
    if (exported) {
      const bytes = await writeLocalFile(csv, exported.body);
      report.bytes += bytes;
      report.files++;
    }
  }
  await removeStaleParts(root);
  return report;
}

const alive = (pid: number) => {
  try {
    process.kill(pid, 0);
    return true;
  } catch (error) {
    return (error as NodeJS.ErrnoException).code === 'EPERM';
  }
};

/**
 * The `.part` files a killed copy (`kill -9`, a power cut) left where a batch's files go — the folder itself (not its
 * other sub-folders: `--out` may be a folder of the user's own) and its `fields/` — named as camflow names them, of
 * processes no longer running on this host: removed once a run has copied everything. One folder open at a time.
 */
async function removeStaleParts(root: string): Promise<void> {
  const folders = [root];
  while (folders.length) {
    const folder = folders.pop()!;
    const dir = await opendir(folder).catch(() => undefined);
    if (!dir) continue;
    for await (const entry of dir) {
      const path = resolve(folder, entry.name);
      if (entry.isDirectory()) {
        if (folder !== root || entry.name === 'fields') folders.push(path);
      } else {
        const pid = PART_FILE.exec(entry.name)?.[1];
        if (pid && Number(pid) !== process.pid && !alive(Number(pid))) await rm(path, { force: true });
      }
    }
  }
}
