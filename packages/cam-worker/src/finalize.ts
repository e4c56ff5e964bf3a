import {
  batchInfoSchema,
  batchJobSchema,
  chunkFailureSchema,
  imageResultSchema,
  isRefused,
  keys,
  manifestLineSchema,
  parseJsonLine,
  parseWith,
  type BatchSummary,
  type ImageResult,
  type Logger,
  type ObjectStore,
  isCellResult,
  deliverWebhook,
  type WebhookDelivery,
  finishListing,
  totalsOf,
  wilsonInterval,
  getModelManifest,
  NotFoundError,
  FIELDS_IN_SUMMARY,
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
  let info = parseWith(batchInfoSchema, await store.getJson(keys.batchInfo(batchId)), 'batch info');
  if (info.listing?.state === 'listing') {
    // An S3-prefix batch whose listing never ended: a page's job was lost for good (it stalled as often as it may)
    // before it could say so. The batch completes with the pages listed, and says where the listing stopped.
    const reason = `the listing stopped after page ${info.listing.pages}: the job of page ${info.listing.pages} failed for good`;
    info = await finishListing(store, info, totalsOf(info), info.listing.pages, 'failed', reason);
    log.warn({ batchId, pages: info.listing?.pages }, reason);
  }
  const manifestKey = keys.batchManifest(batchId);
  // Streamed, so memory is one chunk's results whatever the batch's size: the manifest is read line by line, the
  // accepted lines' chunks come in order (chunk c holds accepted items c·size …), and results.jsonl is written as a
  // multipart stream. Only the counters of the summary grow, and they are small.
  let chunk = -1;
  let chunkResults = new Map<string, ImageResult>();
  /** Images of the loaded chunk whose committed line the schema refused, with the reason. */
  let invalidLines = new Map<string, string>();
  /** Invalid lines of the loaded chunk that name no image (not JSON, or the imageId itself broken). */
  let unattributed = 0;
  let chunkFailure: string | undefined;
  const failedChunks = new Set<number>();
  const load = async (c: number) => {
    chunk = c;
    chunkResults = new Map();
    invalidLines = new Map();
    unattributed = 0;
    chunkFailure = undefined;
    const key = keys.resultChunk(batchId, c);
    const body = await store.getIfExists(key);
    if (body) {
      // Line by line: a committed line the schema refuses (written by an older worker, a defect) fails its own image
      // with the reason, never the whole batch's finalization again and again.
      body
        .toString('utf8')
        .split('\n')
        .forEach((raw, i) => {
          if (raw.trim() === '') return;
          try {
            const r = parseJsonLine(raw, i + 1, imageResultSchema, key);
            chunkResults.set(r.imageId, r);
          } catch (error) {
            const imageId = /"imageId"\s*:\s*"([^"]+)"/.exec(raw)?.[1];
            log.error({ batchId, chunk: c, line: i + 1, err: (error as Error).message }, 'a committed result line is not valid: its image is reported failed');
            if (imageId) invalidLines.set(imageId, (error as Error).message);
            else unattributed++;
          }
        });
      return;
    }
    const record = await store.getJsonIfExists(keys.resultChunkFailure(batchId, c));
    chunkFailure = (record ? parseWith(chunkFailureSchema, record, 'chunk failure').error : chunkError(c)) ?? 'the chunk did not complete';
    failedChunks.add(c);
  };
  const byClass: Record<string, number> = {};
  const failures: Record<string, number> = {};
  let items = 0;
  let ok = 0;
  const screen = { positiveClass: '', positive: 0, negative: 0 };
  const fields = { images: 0, positiveClass: '', cells: 0, counted: 0, infected: 0 };
  const fieldRange: [number, number] = [1, 0];
  const eachField: { name: string; counted: number; infected: number; parasitemia: number; warning?: string }[] = [];
  const count = (l: ImageResult) => {
    items++;
    if (l.status === 'failed') failures[l.reason] = (failures[l.reason] ?? 0) + 1;
    else {
      ok++;
      if (l.kind === 'cell') byClass[l.predicted.label] = (byClass[l.predicted.label] ?? 0) + 1;
      else {
        // A field counts once, under `field`; its cells' classes are in its own summary, and pooled below.
        byClass.field = (byClass.field ?? 0) + 1;
        fields.images++;
        fields.positiveClass ||= l.field.positiveClass;
        fields.cells += l.field.cells;
        fields.counted += l.field.counted;
        fields.infected += l.field.infected;
        if (l.field.counted > 0) {
          fieldRange[0] = Math.min(fieldRange[0], l.field.parasitemia);
          fieldRange[1] = Math.max(fieldRange[1], l.field.parasitemia);
        }
        if (eachField.length < FIELDS_IN_SUMMARY) eachField.push({ name: l.name, counted: l.field.counted, infected: l.field.infected, parasitemia: l.field.parasitemia, ...(l.field.warning ? { warning: l.field.warning } : {}) });
      }
    }
    if (isCellResult(l) && l.screen) {
      screen.positiveClass ||= l.screen.positiveClass;
      if (l.screen.positive) screen.positive++;
      else screen.negative++;
    }
  };
  async function* results(): AsyncGenerator<string> {
    let lineNo = 0;
    for await (const raw of store.lines(manifestKey)) {
      lineNo++;
      if (raw.trim() === '') continue;
      const line = parseJsonLine(raw, lineNo, manifestLineSchema, manifestKey);
      let r: ImageResult;
      if (isRefused(line)) r = { batchId, imageId: line.imageId, name: line.name, status: 'failed', reason: line.reason, error: line.error };
      else {
        if (line.chunk !== chunk) await load(line.chunk);
        const why = chunkFailure ?? 'the chunk committed no result for this item';
        const invalid = invalidLines.get(line.imageId);
        if (invalid !== undefined) r = { batchId, imageId: line.imageId, name: line.name, status: 'failed', reason: 'internal-error', error: `its committed result line was not valid (${invalid}): a defect in camflow; please report it`.slice(0, 2000), modelVersion };
        else if (!chunkResults.has(line.imageId) && unattributed > 0 && chunkFailure === undefined)
          r = { batchId, imageId: line.imageId, name: line.name, status: 'failed', reason: 'internal-error', error: `chunk ${line.chunk} committed ${unattributed} result line(s) that name no image (see the finalizer's log): a defect in camflow; please report it`, modelVersion };
        else
          r = chunkResults.get(line.imageId) ?? { batchId, imageId: line.imageId, name: line.name, status: 'failed', reason: 'chunk-failed', error: `chunk ${line.chunk} failed after its retries: ${why}`, modelVersion };
      }
      count(r);
      yield `${JSON.stringify(r)}\n`;
    }
  }
  await store.putStream(keys.resultsJsonl(batchId), results(), 'application/x-ndjson');
  // A model the trainer would not promote (it does not yet tell the classes apart), served anyway (promoted by hand,
  // or named with --model): every summary of its batches says so. A storage error fails this try (it is retried).
  const served = await getModelManifest(store, modelVersion).catch((error: unknown) => {
    if (error instanceof NotFoundError) return undefined;
    throw error;
  });
  const modelWarnings = served?.notLearnt ? [served.notLearnt] : undefined;
  const summary: BatchSummary = {
    batchId,
    modelVersion,
    items,
    ok,
    failed: items - ok,
    byClass,
    failures,
    chunks: { total: info.chunks, failed: failedChunks.size },
    ...(screen.positive + screen.negative > 0 ? { screen } : {}),
    ...(fields.images > 0
      ? { fields: { ...fields, parasitemia: fields.counted ? fields.infected / fields.counted : 0, interval: wilsonInterval(fields.infected, fields.counted), ...(fieldRange[0] <= fieldRange[1] ? { range: fieldRange } : {}), each: eachField } }
      : {}),
    ...(info.listing ? { listing: { source: info.listing.source, state: info.listing.state, pages: info.listing.pages, ...(info.listing.reason ? { reason: info.listing.reason } : {}) } } : {}),
    ...(modelWarnings?.length ? { modelWarnings } : {}),
    completedAt: new Date().toISOString(),
  };
  // summary.json last: it is what marks the batch completed.
  await store.putJson(keys.resultsSummary(batchId), summary);
  log.info({ batchId, items: summary.items, ok, failed: summary.failed }, 'batch completed');
  if (info.webhook) {
    if (!webhookSecret) log.warn({ batchId }, 'WEBHOOK_SECRET is not set on this worker: the completion webhook goes unsigned');
    // `results` is the object's key in camflow's store; `resultsPath` where the API serves it.
    const delivery = await deliverWebhook(info.webhook, { event: 'batch.completed', batchId, summary, results: keys.resultsJsonl(batchId), resultsPath: `/v1/batches/${batchId}/results` }, webhookSecret, log.child({ batchId }));
    const record: WebhookDelivery = { ...delivery, at: new Date().toISOString() };
    await store.putJson(keys.batchWebhook(batchId), record).catch((error: Error) => log.warn({ batchId, err: error.message }, 'could not record how the webhook went'));
  }
  return summary;
}
