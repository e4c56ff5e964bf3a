import {
  batchInfoSchema,
  batchJobSchema,
  chunkFailureSchema,
  imageResultSchema,
  isRefused,
  keys,
  manifestLineSchema,
  parseJsonLines,
  parseWith,
  toJsonLines,
  type BatchSummary,
  type ImageResult,
  type Logger,
  type ObjectStore,
  isCellResult,
  deliverWebhook,
} from '@camflow/common';

export type { BatchSummary };

/**
 * Write `results.jsonl` (one line per submitted entry, in submission order, exactly once) and `summary.json`.
 * Entries refused at submission and items of chunks that exhausted their retries are reported as failed with their
 * reason; they never block or hide the rest of the batch. Idempotent: it reads only S3 (batch info, manifest,
 * committed chunks, chunk failure records), so running it again, or after `repair`, writes the same lines.
 *
 * `chunkError(c)` is the failure reason BullMQ reported for chunk `c`'s job, if any (used when no record is in S3).
 */
export async function finalizeBatch(payload: unknown, store: ObjectStore, chunkError: (chunk: number) => string | undefined, log: Logger, webhookSecret?: string): Promise<BatchSummary> {
  const { batchId, modelVersion } = parseWith(batchJobSchema, payload, 'batch job');
  const info = parseWith(batchInfoSchema, await store.getJson(keys.batchInfo(batchId)), 'batch info');
  const manifestKey = keys.batchManifest(batchId);
  const manifest = parseJsonLines((await store.get(manifestKey)).toString('utf8'), manifestLineSchema, manifestKey);
  const results = new Map<string, ImageResult>();
  const failedChunks = new Map<number, string>();
  for (let c = 0; c < info.chunks; c++) {
    const key = keys.resultChunk(batchId, c);
    const body = await store.getIfExists(key);
    if (body) {
      for (const r of parseJsonLines(body.toString('utf8'), imageResultSchema, key)) results.set(r.imageId, r);
      continue;
    }
    const record = await store.getJsonIfExists(keys.resultChunkFailure(batchId, c));
    const why = record ? parseWith(chunkFailureSchema, record, 'chunk failure').error : chunkError(c);
    failedChunks.set(c, why ?? 'the chunk did not complete');
  }
  const lines: ImageResult[] = manifest.map((line) => {
    if (isRefused(line)) return { batchId, imageId: line.imageId, name: line.name, status: 'failed', reason: line.reason, error: line.error };
    const r = results.get(line.imageId);
    if (r) return r;
    const why = failedChunks.get(line.chunk) ?? 'the chunk committed no result for this item';
    return { batchId, imageId: line.imageId, name: line.name, status: 'failed', reason: 'chunk-failed', error: `chunk ${line.chunk} failed after its retries: ${why}`, modelVersion };
  });
  await store.put(keys.resultsJsonl(batchId), toJsonLines(lines), 'application/x-ndjson');
  const byClass: Record<string, number> = {};
  const failures: Record<string, number> = {};
  for (const l of lines) {
    if (l.status === 'failed') failures[l.reason] = (failures[l.reason] ?? 0) + 1;
    else if (l.kind === 'cell') byClass[l.predicted.label] = (byClass[l.predicted.label] ?? 0) + 1;
    // A field counts once, under `field`; its cells' classes are in its own summary.
    else byClass.field = (byClass.field ?? 0) + 1;
  }
  const ok = lines.filter((l) => l.status === 'ok').length;
  const screened = lines.flatMap((l) => (isCellResult(l) && l.screen ? [l.screen] : []));
  const summary: BatchSummary = {
    batchId,
    modelVersion,
    items: lines.length,
    ok,
    failed: lines.length - ok,
    byClass,
    failures,
    chunks: { total: info.chunks, failed: failedChunks.size },
    ...(screened.length > 0 ? { screen: { positiveClass: screened[0]!.positiveClass, positive: screened.filter((s) => s.positive).length, negative: screened.filter((s) => !s.positive).length } } : {}),
    completedAt: new Date().toISOString(),
  };
  // summary.json last: it is what marks the batch completed.
  await store.putJson(keys.resultsSummary(batchId), summary);
  log.info({ batchId, items: summary.items, ok, failed: summary.failed }, 'batch completed');
  if (info.webhook) {
    if (!webhookSecret) log.warn({ batchId }, 'WEBHOOK_SECRET is not set on this worker: the completion webhook goes unsigned');
    await deliverWebhook(info.webhook, { event: 'batch.completed', batchId, summary, results: keys.resultsJsonl(batchId) }, webhookSecret, log.child({ batchId }));
  }
  return summary;
}
