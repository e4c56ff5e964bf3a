import { CamflowError, InvalidParameterError, batchCursorSchema, parseWith } from '@camflow/common/core';
import { cancelBatch, batchListingPage, repairBatch } from '@camflow/ingest';
import { print, withContext } from '../cli-io.js';
import type { CommandInput } from '../cli-io.js';

/** `camflow batches`: see `camflow batches --help` (the command table in `commands.ts`). */
export async function run({ v, rest, num }: CommandInput): Promise<void> {
  if (rest[0] === 'list') {
    const limit = num('limit', 50)!;
    if (!Number.isInteger(limit) || limit < 1) throw new InvalidParameterError('--limit', 'a positive integer', v.limit);
    const before = v.before === undefined ? undefined : parseWith(batchCursorSchema, v.before, '--before');
    await withContext(async (ctx) => {
      const { batches: list, next } = await batchListingPage(ctx.store, ctx.queues.batch, limit, before);
      const human = list.length
        ? list.map((b) => `${b.batchId}  ${b.createdAt}  ${(b.cancelled ? `${b.state}, cancelled` : b.state === 'elsewhere' ? `queued under QUEUE_PREFIX=${b.queuePrefix}` : b.state).padEnd(9)}  ${b.images ? `${b.images.done}/${b.images.total} images` : `${b.accepted} images`}, ${b.rejected} refused  model ${b.modelVersion}${b.listing?.state === 'listing' ? `  (listing: ${b.listing.pages} pages so far)` : ''}${b.source ? `  ${b.source}` : ''}`).join('\n')
        : before === undefined ? 'no batches yet: camflow submit FOLDER' : `no batches before ${before}`;
      // More may follow: the command that shows them.
      print(v.json, { batches: list, ...(next ? { next } : {}) }, `${human}${next ? `\n(older batches: camflow batches list --limit ${limit} --before ${next})` : ''}`);
    });
    return;
  }
  if (rest[0] === 'cancel') {
    if (!rest[1]) throw new CamflowError('USAGE', 'usage: camflow batches cancel BATCH_ID');
    await withContext(async (ctx) => {
      const report = await cancelBatch(ctx.store, ctx.queues.batch, rest[1]!);
      print(v.json, report, report.action === 'cancelled' ? `${report.batchId}: cancelled; chunks not yet localized give their images a "cancelled" line, running ones finish (camflow status ${report.batchId})` : `${report.batchId}: nothing to cancel (${report.cancelledAt ? `cancelled at ${report.cancelledAt}` : report.state})`);
    });
    return;
  }
  if (rest[0] !== 'repair' || !rest[1]) throw new CamflowError('USAGE', 'usage: camflow batches list [--limit N] | cancel BATCH_ID | repair BATCH_ID');
  await withContext(async (ctx) => {
    const report = await repairBatch({ store: ctx.store, flow: ctx.flow, queues: ctx.queues, batchId: rest[1]!, log: ctx.log });
    print(v.json, report, report.action === 'none' ? `${report.batchId}: nothing to repair (${report.state})` : `${report.batchId}: jobs re-created for chunks [${report.recreated.join(', ')}]; finalization queued (${report.committed} chunks already committed, ${report.failed.length} failed)`);
  });
}
