import { batchJobSchema, keys, parseWith, type BatchItem, type Logger, type ObjectStore, type RejectedItem } from '@camflow/common';
import type { ImageResult } from './chunk.js';

export interface BatchSummary {
  batchId: string;
  modelVersion: string;
  items: number;
  ok: number;
  failed: number;
  byClass: Record<string, number>;
  failures: Record<string, number>;
  chunks: { total: number; failed: number };
  completedAt: string;
}

const parseLines = <T>(text: string): T[] =>
  text
    .split('\n')
    .filter((l) => l.trim() !== '')
    .map((l) => JSON.parse(l) as T);

/**
 * Write `results.jsonl` (one line per submitted item, in submission order, exactly once) and `summary.json`.
 * Items refused at ingest and items of chunks that exhausted their retries are reported as failed with their
 * reason; they never block or hide the rest of the batch.
 */
export async function finalizeBatch(
  payload: unknown,
  store: ObjectStore,
  chunkFailures: Record<number, string>,
  log: Logger,
): Promise<BatchSummary> {
  const { batchId, modelVersion, chunks, chunkSize } = parseWith(batchJobSchema, payload, 'batch job');
  const manifest = parseLines<BatchItem | RejectedItem>((await store.get(keys.batchManifest(batchId))).toString('utf8'));
  const results = new Map<string, ImageResult>();
  const chunkOf = new Map<string, number>();
  const failedChunks = new Set<number>();
  for (let c = 0; c < chunks; c++) {
    const body = await store.getIfExists(keys.resultChunk(batchId, c));
    if (!body) {
      failedChunks.add(c);
      continue;
    }
    for (const r of parseLines<ImageResult>(body.toString('utf8'))) results.set(r.imageId, r);
  }
  // Chunk membership of accepted items follows submission order (see submitBatch).
  let accepted = 0;
  for (const line of manifest) if (!('error' in line)) chunkOf.set(line.imageId, Math.floor(accepted++ / chunkSize));
  const lines: ImageResult[] = manifest.map((line) => {
    if ('error' in line) {
      const [reason] = line.error.split(':');
      return { batchId, imageId: line.imageId, name: line.name, status: 'failed', reason: reason ?? 'rejected', error: line.error };
    }
    const r = results.get(line.imageId);
    if (r) return r;
    const chunk = chunkOf.get(line.imageId)!;
    const why = chunkFailures[chunk] ?? 'chunk did not complete';
    return { batchId, imageId: line.imageId, name: line.name, status: 'failed', reason: 'chunk-failed', error: `chunk ${chunk} failed after its retries: ${why}`, modelVersion };
  });
  await store.put(keys.resultsJsonl(batchId), lines.map((l) => JSON.stringify(l)).join('\n') + (lines.length ? '\n' : ''), 'application/x-ndjson');
  const byClass: Record<string, number> = {};
  const failures: Record<string, number> = {};
  for (const l of lines) {
    if (l.status === 'ok') byClass[l.predicted.label] = (byClass[l.predicted.label] ?? 0) + 1;
    else failures[l.reason] = (failures[l.reason] ?? 0) + 1;
  }
  const ok = lines.filter((l) => l.status === 'ok').length;
  const summary: BatchSummary = {
    batchId,
    modelVersion,
    items: lines.length,
    ok,
    failed: lines.length - ok,
    byClass,
    failures,
    chunks: { total: chunks, failed: failedChunks.size },
    completedAt: new Date().toISOString(),
  };
  await store.putJson(keys.resultsSummary(batchId), summary);
  log.info({ batchId, items: summary.items, ok, failed: summary.failed }, 'batch completed');
  return summary;
}
