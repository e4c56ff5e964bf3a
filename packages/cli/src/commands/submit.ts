import { CamflowError, InvalidParameterError, batchPrioritySchema, camOptionsSchema, parseOutputs, parseWith, s3SourceOptions } from '@camflow/common/core';
import { submitBatch } from '@camflow/ingest';
import { interruptibleWait, waitForBatch } from '../wait.js';
import { counted, print, progressBar, withContext } from '../cli-io.js';
import type { CommandInput } from '../cli-io.js';
import { summaryText } from '../summary-text.js';

/** The cam options' fields as the CLI's flags name them. */
const SUBMIT_FLAGS: Record<string, string> = { target: '--target', fraction: '--fraction', outputs: '--outputs', precision: '--precision', restrictToCell: '--no-cell-mask', kind: '--kind', cellDiameter: '--cell-diameter' };

/** `camflow submit`: see `camflow submit --help` (the command table in `commands.ts`). */
export async function run({ v, rest, num }: CommandInput): Promise<void> {
  if (!rest[0]) throw new CamflowError('USAGE', 'usage: camflow submit PATH');
  // Options are checked before anything is contacted, each error naming the flag that was typed.
  const options = parseWith(camOptionsSchema, {
    ...(v.target ? { target: v.target } : {}),
    ...(v.fraction !== undefined ? { fraction: num('fraction') } : {}),
    ...(v.outputs ? { outputs: parseOutputs(v.outputs, '--outputs') } : {}),
    ...(v.precision ? { precision: v.precision } : {}),
    ...(v['no-cell-mask'] ? { restrictToCell: false } : {}),
    ...(v.kind ? { kind: v.kind } : {}),
    ...(v['cell-diameter'] !== undefined ? { cellDiameter: num('cell-diameter') } : {}),
  }, '--options', SUBMIT_FLAGS);
  if (v.priority) parseWith(batchPrioritySchema, v.priority, '--priority');
  const chunkSize = num('chunk-size');
  if (chunkSize !== undefined && !(Number.isInteger(chunkSize) && chunkSize >= 1 && chunkSize <= 10_000)) throw new InvalidParameterError('--chunk-size', 'an integer in [1, 10000]', chunkSize);
  await withContext(async (ctx) => {
    const info = await submitBatch({
      store: ctx.store,
      flow: ctx.flow,
      redis: ctx.redis,
      queues: ctx.queues,
      prefix: ctx.config.QUEUE_PREFIX,
      source: rest[0]!,
      options,
      optionField: (name) => SUBMIT_FLAGS[name] ?? `--${name}`,
      chunkSize: chunkSize ?? ctx.config.CAM_CHUNK_SIZE,
      limits: { maxFileBytes: ctx.config.MAX_FILE_BYTES, maxArchiveBytes: ctx.config.MAX_ARCHIVE_BYTES },
      s3Source: s3SourceOptions(ctx.config),
      listingPageSize: ctx.config.SOURCE_S3_PAGE_SIZE,
      ...(v.priority ? { priority: v.priority as 'high' | 'normal' | 'low' } : {}),
      ...(v.webhook ? { webhook: v.webhook } : {}),
      attempts: ctx.config.CAM_ATTEMPTS,
      backoffMs: ctx.config.CAM_BACKOFF_MS,
      maxPixels: ctx.config.MAX_IMAGE_PIXELS,
      maxSlidePixels: ctx.config.MAX_SLIDE_PIXELS,
      maxFieldPixels: ctx.config.MAX_FIELD_PIXELS,
      log: ctx.log,
      ...(v.model ? { modelVersion: v.model } : {}),
      ...(v.key ? { idempotencyKey: v.key } : {}),
      onProgress: v.json ? undefined : progressBar('ingest'),
    });
    // What was refused at submission, said when it is known (the first ten; every one is a line of the results).
    const refused = info.refused ?? [];
    const shown = refused.slice(0, 10).map((r) => `\n  refused ${r.name}: ${r.reason}: ${r.error}`).join('');
    const more = refused.length && info.rejected > Math.min(10, refused.length) ? `\n  … and ${info.rejected - Math.min(10, refused.length)} more (\`camflow results ${info.batchId}\` lists every one)` : '';
    if (!v.wait) {
      const what = info.listing && info.listing.state === 'listing' ? `${info.listing.source} is being listed by the ingest workers, ${info.listing.pageSize} keys a page (\`camflow status ${info.batchId}\` shows it grow)` : `${counted(info.accepted, 'image')}, ${info.rejected} refused, ${counted(info.chunks, 'chunk')}`;
      print(v.json, info, `batch ${info.batchId}${info.existing ? ' (already submitted)' : ''}: ${what}, model ${info.modelVersion}${shown}${more}`);
      return;
    }
    if (!v.json && shown) process.stderr.write(`${counted(info.rejected, 'file')} refused at submission:${shown}${more}\n`);
    const bar = v.json ? undefined : progressBar('localize');
    const release = interruptibleWait({ what: `batch ${info.batchId}${info.existing ? ' (already submitted)' : ''}`, where: 'the cam-workers', follow: `camflow status ${info.batchId}`, stop: `camflow batches cancel ${info.batchId}` });
    const status = await waitForBatch(ctx, info.batchId, 24 * 3600_000, (s) => (s.images ? bar?.(s.images.done, s.images.total, s.state === 'running' ? s.images.etaSeconds : undefined, s.fieldParts ? `field cells in groups ${s.fieldParts.done}/${s.fieldParts.total}` : undefined) : bar?.(s.chunks.done, s.chunks.total))).finally(release);
    const listing = status.summary?.listing;
    const listingFailed = listing?.state === 'failed' ? `the listing of ${listing.source} failed at page ${listing.pages + 1} (${status.summary!.items} objects listed before it): ${listing.reason ?? 'no reason recorded'}` : undefined;
    print(v.json, status, `batch ${info.batchId} completed${status.cancelled ? ` (cancelled at ${status.cancelled.at})` : ''}${status.summary ? `\n${summaryText(status.summary)}` : ''}\n(\`camflow results ${info.batchId}\` has every image's line)`);
    // Complete, but short of the prefix: not a success to a script that waited for it.
    if (listingFailed) throw new CamflowError('SOURCE', listingFailed);
    // Complete, and not one file localized (all refused or failed, not cancelled): neither.
    const s = status.summary;
    if (s && s.items > 0 && s.ok === 0 && !status.cancelled) {
      const reasons = Object.entries(s.failures).sort((a, b) => b[1] - a[1]).map(([reason, n]) => `${reason} ${n}`).join(', ');
      throw new CamflowError('NOTHING_LOCALIZED', `none of the ${counted(s.items, 'file')} was localized (${reasons}): \`camflow results ${info.batchId}\` gives each one's reason`);
    }
  });
}
