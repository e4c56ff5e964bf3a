import { CamflowError, NotFoundError } from '@camflow/common/core';
import { batchStatus, type BatchStatus } from '@camflow/ingest';
import { counted, print, formatDuration, withContext } from '../cli-io.js';
import type { CommandInput } from '../cli-io.js';
import { summaryText } from '../summary-text.js';

/** `camflow status`: see `camflow status --help` (the command table in `commands.ts`). */
export async function run({ v, rest }: CommandInput): Promise<void> {
  if (!rest[0]) throw new CamflowError('USAGE', 'usage: camflow status BATCH_ID');
  await withContext(async (ctx) => {
    const status = await batchStatus(ctx.store, ctx.queues.batch, rest[0]!, ctx.queues);
    if (status.state === 'unknown') throw new NotFoundError('batch', rest[0]!);
    const im = status.images;
    // `images` counts what the workers take; entries refused at submission already have their lines, said beside.
    const refused = status.info?.rejected ? ` + ${status.info.rejected} refused at submission` : '';
    const parts = status.fieldParts ? `, field cells in groups ${status.fieldParts.done}/${status.fieldParts.total}` : '';
    const progress = im ? `images ${im.done}/${im.total}${im.perSecond !== undefined && im.etaSeconds !== undefined && status.state === 'running' ? ` (${im.perSecond}/s, about ${formatDuration(im.etaSeconds)} left)` : ''}${refused}${parts}, ` : '';
    const listing = status.info?.listing;
    const listed = listing ? `listing ${listing.state === 'listing' ? `under way (${counted(listing.pages, 'page')} so far)` : `${listing.state} (${counted(listing.pages, 'page')})`}${listing.reason ? `: ${listing.reason}` : ''}, ` : '';
    print(v.json, status, `${status.batchId}: ${status.state}${status.cancelled ? ` (cancelled at ${status.cancelled.at})` : ''}, ${listed}${progress}chunks ${status.chunks.done}/${status.chunks.total}${status.reason ? `\n${status.reason}` : ''}${status.listingRetry ? `\n${status.listingRetry}` : ''}${status.waiting ? `\n${status.waiting}` : ''}${status.summary ? `\n${summaryText(status.summary)}` : ''}${status.webhook ? `\n${webhookText(status.webhook)}` : ''}`);
  });
}

/** A completed batch's webhook in a sentence: delivered, still being tried, or not delivered and why. */
export function webhookText(w: NonNullable<BatchStatus['webhook']>): string {
  if ('pending' in w) return `webhook: being delivered to ${w.origin}`;
  if ('unrecorded' in w) return `webhook to ${w.origin}: no delivery record (the batch completed before deliveries were recorded, or its finalizer stopped while trying)`;
  if (w.delivered) return `webhook: delivered to ${w.origin} (${counted(w.attempts, 'attempt')})`;
  return `webhook: NOT delivered to ${w.origin} after ${counted(w.attempts, 'attempt')} (${w.error ?? 'no reason recorded'}): the batch is complete, its receiver was not told`;
}
