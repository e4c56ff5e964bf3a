import type { ObjectStore } from '../storage/object-store.js';
import { keys } from '../storage/keys.js';
import { manifestLineSchema, parseJsonLines, type BatchInfo, type ListingTotals } from './contracts.js';

/**
 * End the listing of an S3-prefix batch: join the manifest parts of pages `0 … pages − 1` into its `manifest.jsonl`
 * (streamed, validated line by line) and write its final `batch.json`. Idempotent. Called by the last page (`done`),
 * a page that finds the batch cancelled, a page that failed for good, and the finalizer when it finds a listing that
 * never ended (its page job was lost to stalls).
 */
export async function finishListing(store: ObjectStore, info: BatchInfo, totals: ListingTotals, pages: number, state: 'done' | 'cancelled' | 'failed', reason?: string): Promise<BatchInfo> {
  const batchId = info.batchId;
  if (!info.listing) throw new Error(`batch ${batchId} is not a listed batch`);
  async function* parts() {
    for (let p = 0; p < pages; p++) {
      const key = keys.batchManifestPart(batchId, p);
      for (const line of parseJsonLines((await store.get(key)).toString('utf8'), manifestLineSchema, key)) yield `${JSON.stringify(line)}\n`;
    }
  }
  await store.putStream(keys.batchManifest(batchId), parts(), 'application/x-ndjson');
  const final: BatchInfo = { ...info, ...totals, listing: { ...info.listing, pages, state, ...(reason ? { reason } : {}) } };
  await store.putJson(keys.batchInfo(batchId), final);
  return final;
}

/** A batch's running totals as its `batch.json` has them. */
export const totalsOf = (info: BatchInfo): ListingTotals => ({ items: info.items, accepted: info.accepted, rejected: info.rejected, uniqueImages: info.uniqueImages, chunks: info.chunks });
