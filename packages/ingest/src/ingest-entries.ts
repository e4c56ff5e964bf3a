import {
  DEFAULT_MAX_SLIDE_PIXELS,
  ImageInputError,
  StorageError,
  isRefused,
  itemKind,
  kindContradiction,
  keys,
  packInputs,
  sha256Hex,
  type CamOptions,
  type Logger,
  type ManifestLine,
  type ObjectStore,
  type Refusal,
} from '@camflow/common/core';
import type { OpenedSource, SourceFile } from './sources.js';
import { storeOriginal } from './store-image.js';

/** What every entry of a submission is checked against, and where its lines and chunks start. */
export interface EntryIngestPlan {
  store: ObjectStore;
  batchId: string;
  options: CamOptions;
  model: { inputSize: number; cellSide?: number | undefined };
  chunkSize: number;
  maxPixels: number;
  maxSlidePixels?: number | undefined;
  maxFieldPixels?: number | undefined;
  /** The first entry's image number (`i0000000` …) and the first chunk's number: a listed batch goes on from its last page. */
  firstImage?: number;
  firstChunk?: number;
  /** Called in submission order with each entry's name and content digest (or refusal): the batch's fingerprint. */
  onCommit?: (name: string, content: string) => void;
  /** Entries done, and the total when it is known in advance. */
  onProgress?: (done: number, total: number | undefined) => void;
  total?: number | undefined;
  log?: Logger | undefined;
}

export interface IngestedEntries {
  /** One manifest line per entry, in submission order. */
  lines: ManifestLine[];
  accepted: number;
  /** Chunks the accepted entries fill, numbered from `firstChunk`. */
  chunks: number;
  uniqueImages: number;
}

/** Why an entry is refused, as a structured reason. Storage errors are not refusals: they fail the submission. */
export function refusalFor(error: unknown): Refusal {
  if (error instanceof ImageInputError) return { reason: error.reason, error: error.message };
  const code = (error as NodeJS.ErrnoException).code;
  if (code && /^E[A-Z]+$/.test(code)) return { reason: 'unreadable', error: `file cannot be read (${code})` };
  throw error;
}

/** Pull entries from a source with `parallel` in flight; `onEntry` gets each with its index (submission order). */
export async function forEachEntry(source: OpenedSource, parallel: number, onEntry: (entry: SourceFile, index: number) => Promise<void>): Promise<number> {
  const it = source.entries[Symbol.asyncIterator]();
  let next = 0;
  let done = false;
  const runners = Array.from({ length: parallel }, async () => {
    while (!done) {
      const index = next++; // async generators resolve next() calls in call order
      const r = await it.next();
      if (r.done) {
        done = true;
        next--;
        return;
      }
      try {
        await onEntry(r.value, index);
      } catch (error) {
        done = true; // the other runners stop pulling: the submission has failed
        throw error;
      }
    }
  });
  try {
    await Promise.all(runners);
  } finally {
    await it.return?.(undefined);
  }
  return next;
}

export const imageIdFor = (n: number) => `i${String(n).padStart(7, '0')}`;

/**
 * Validate and store every entry of a source content-addressed, and give each one manifest line: accepted (with its
 * chunk) or refused with a reason. Entries stream with 8 in flight; lines are committed in submission order. Cell
 * crops are decoded and resized to the model's input here, so one a cam-worker would refuse (undecodable pixels, no
 * colour) is refused now. Archive runs (no heatmap or overlay) keep those inputs, packed per chunk: a cam-worker then
 * makes one GET per chunk instead of one per image. Memory is bounded by one chunk's inputs.
 */
export async function ingestEntries(source: OpenedSource, plan: EntryIngestPlan): Promise<IngestedEntries> {
  const { store, batchId, options, model, chunkSize } = plan;
  const firstImage = plan.firstImage ?? 0;
  const firstChunk = plan.firstChunk ?? 0;
  const inputSize = options.outputs.includes('heatmap') || options.outputs.includes('overlay') ? undefined : model.inputSize;
  const known = new Set<string>();
  const lines: ManifestLine[] = [];
  // Entries finish out of order (8 in flight); lines are committed in submission order.
  const finished = new Map<number, { name: string; content: string; line: ManifestLine; inputPng?: Buffer }>();
  let accepted = 0;
  let packed = 0;
  let unpacked: { sha256: string; png: Buffer }[] = [];
  let done = 0;
  /** Write the model inputs gathered so far as the next chunk's pack (archive runs). */
  const writePack = async () => {
    const entries = unpacked;
    unpacked = [];
    await store.put(keys.batchInputs(batchId, firstChunk + packed++), packInputs(inputSize!, entries), 'application/octet-stream');
  };
  // Runs one at a time (chained below): lines, chunks and packs follow submission order.
  const commit = async () => {
    for (let e = finished.get(lines.length); e; e = finished.get(lines.length)) {
      finished.delete(lines.length);
      plan.onCommit?.(e.name, e.content);
      lines.push(e.line);
      if (isRefused(e.line)) continue;
      // Chunks follow submission order over the accepted entries; the manifest line carries its chunk.
      e.line.chunk = firstChunk + Math.floor(accepted++ / chunkSize);
      if (!inputSize) continue;
      if (e.inputPng) unpacked.push({ sha256: e.line.sha256, png: e.inputPng });
      if (accepted % chunkSize === 0) await writePack();
    }
  };
  let pendingCommits = Promise.resolve();
  await forEachEntry(source, 8, async (entry, index) => {
    const imageId = imageIdFor(firstImage + index);
    let result: { name: string; content: string; line: ManifestLine; inputPng?: Buffer };
    if ('refused' in entry) {
      result = { name: entry.name, content: `refused:${entry.refused.reason}`, line: { imageId, name: entry.name, ...entry.refused } };
    } else {
      let bytes: Buffer | undefined;
      try {
        bytes = await entry.read();
        const { inputPng, ...stored } = await storeOriginal(
          store,
          bytes,
          plan.maxPixels,
          known,
          { size: model.inputSize, pack: inputSize !== undefined },
          (w, h) => {
            const contradiction = kindContradiction(options.kind, w, h, model.cellSide);
            if (contradiction) throw new ImageInputError(contradiction.reason, contradiction.error);
            return itemKind(options.kind, w, h, model.cellSide);
          },
          plan.maxSlidePixels ?? DEFAULT_MAX_SLIDE_PIXELS,
          plan.maxFieldPixels ?? plan.maxPixels,
        );
        result = { name: entry.name, content: stored.sha256, line: { imageId, name: entry.name, ...stored, chunk: -1 }, ...(inputPng ? { inputPng } : {}) };
      } catch (error) {
        if (error instanceof StorageError) throw error;
        result = { name: entry.name, content: bytes ? sha256Hex(bytes) : 'unreadable', line: { imageId, name: entry.name, ...refusalFor(error) } };
      }
    }
    finished.set(index, result);
    plan.onProgress?.(++done, plan.total);
    if (done % 1000 === 0) plan.log?.debug({ entries: done }, 'entries read');
    pendingCommits = pendingCommits.then(commit);
    await pendingCommits;
  });
  await pendingCommits;
  if (inputSize && accepted % chunkSize !== 0) await writePack();
  return { lines, accepted, chunks: Math.ceil(accepted / chunkSize), uniqueImages: known.size };
}
