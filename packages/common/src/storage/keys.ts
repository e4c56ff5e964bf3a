import { InvalidParameterError } from '../errors.js';

/**
 * The one module that builds object keys. Keys derive from content hashes and generated ids, never from
 * user-supplied paths, so a file called `../../etc/passwd` can only ever be metadata.
 */

const SHA256 = /^[0-9a-f]{64}$/;
const ID = /^[A-Za-z0-9][A-Za-z0-9_.-]{0,127}$/;
const EXT = /^[a-z0-9]{1,8}$/;

function check(field: string, value: string, pattern: RegExp, expected: string): string {
  if (!pattern.test(value) || value.includes('..')) throw new InvalidParameterError(field, expected, value);
  return value;
}
const sha = (v: string) => check('sha256', v, SHA256, '64 lowercase hex characters');
const id = (field: string, v: string) => check(field, v, ID, 'a name of letters, digits, _ . - (at most 128), starting with a letter or digit, without ".."');

export const keys = {
  original: (sha256: string, ext: string) => `originals/${sha(sha256).slice(0, 2)}/${sha256}.${check('ext', ext, EXT, 'a lowercase extension')}`,

  datasetPrefix: (name: string) => `datasets/${id('dataset', name)}/`,
  datasetManifest: (name: string, version: string) => `datasets/${id('dataset', name)}/${id('version', version)}/manifest.json`,
  datasetShard: (name: string, version: string, index: number) =>
    `datasets/${id('dataset', name)}/${id('version', version)}/shards/${String(index).padStart(5, '0')}.bin`,
  datasetLatest: (name: string) => `datasets/${id('dataset', name)}/latest.json`,

  batchManifest: (batchId: string) => `batches/${id('batchId', batchId)}/manifest.jsonl`,
  /** An idempotency key's claim (by the key's digest): which batch owns the key. */
  batchKeyClaim: (keyDigest: string) => `batches/keys/${check('keyDigest', keyDigest, SHA256, '64 lowercase hex characters')}.json`,
  batchInfo: (batchId: string) => `batches/${id('batchId', batchId)}/batch.json`,
  /** Written by `camflow batches cancel`: chunks not yet committed then give every item a `cancelled` line. */
  batchCancel: (batchId: string) => `batches/${id('batchId', batchId)}/cancelled.json`,
  /** How the completion webhook went (delivered or not, after how many tries, why not): `status` shows it. */
  batchWebhook: (batchId: string) => `batches/${id('batchId', batchId)}/webhook.json`,
  /** An S3-prefix batch's listing: the keys page `page` listed, and the manifest lines of that page. */
  batchListingPage: (batchId: string, page: number) => `batches/${id('batchId', batchId)}/listing/${String(page).padStart(6, '0')}.json`,
  batchManifestPart: (batchId: string, page: number) => `batches/${id('batchId', batchId)}/listing/${String(page).padStart(6, '0')}.manifest.jsonl`,
  /** A chunk's model inputs, packed (archive runs): one GET per chunk instead of one per image. */
  batchInputs: (batchId: string, chunk: number) => `batches/${id('batchId', batchId)}/inputs/${String(chunk).padStart(6, '0')}.pack`,

  /**
   * A smear field's cells fanned out over the `cam` queue: the plan (cells found, their parts), each part's model
   * inputs, each part's localizations (or why the part failed for good), and the chunk's cell lines kept while its
   * fields' parts run.
   */
  fieldPlan: (batchId: string, imageId: string) => `batches/${id('batchId', batchId)}/fields/${id('imageId', imageId)}/plan.json`,
  fieldCellsInput: (batchId: string, imageId: string, part: number) => `batches/${id('batchId', batchId)}/fields/${id('imageId', imageId)}/${String(part).padStart(5, '0')}.pack`,
  fieldCellsResult: (batchId: string, imageId: string, part: number) => `batches/${id('batchId', batchId)}/fields/${id('imageId', imageId)}/${String(part).padStart(5, '0')}.json`,
  fieldCellsFailure: (batchId: string, imageId: string, part: number) => `batches/${id('batchId', batchId)}/fields/${id('imageId', imageId)}/${String(part).padStart(5, '0')}.failed.json`,
  chunkPendingLines: (batchId: string, chunk: number) => `batches/${id('batchId', batchId)}/pending/${String(chunk).padStart(6, '0')}.jsonl`,

  resultPrefix: (batchId: string) => `results/${id('batchId', batchId)}/`,
  resultJson: (batchId: string, imageId: string) => `results/${id('batchId', batchId)}/${id('imageId', imageId)}.json`,
  resultHeatmap: (batchId: string, imageId: string) => `results/${id('batchId', batchId)}/${id('imageId', imageId)}.heatmap.png`,
  resultOverlay: (batchId: string, imageId: string) => `results/${id('batchId', batchId)}/${id('imageId', imageId)}.overlay.png`,
  /** A smear field's answer (`field.json`: summary and every cell) and its cells as QuPath-ready GeoJSON. */
  resultField: (batchId: string, imageId: string) => `results/${id('batchId', batchId)}/fields/${id('imageId', imageId)}/field.json`,
  resultGeojson: (batchId: string, imageId: string) => `results/${id('batchId', batchId)}/fields/${id('imageId', imageId)}/cells.geojson`,
  /** A field's Deep Zoom pyramids: `layer` is `field` (the photo) or `heatmap` (its cells' stitched CAMs, RGBA). */
  resultDeepZoom: (batchId: string, imageId: string, layer: 'field' | 'heatmap') => `results/${id('batchId', batchId)}/fields/${id('imageId', imageId)}/${check('layer', layer, /^(field|heatmap)$/, 'field or heatmap')}.dzi`,
  resultChunk: (batchId: string, chunk: number) => `results/${id('batchId', batchId)}/chunks/${String(chunk).padStart(6, '0')}.jsonl`,
  /** A chunk whose job exhausted its attempts: the reason, kept where a lost Redis cannot take it. */
  resultChunkFailure: (batchId: string, chunk: number) => `results/${id('batchId', batchId)}/chunks/${String(chunk).padStart(6, '0')}.failed.json`,
  resultsJsonl: (batchId: string) => `results/${id('batchId', batchId)}/results.jsonl`,
  resultsSummary: (batchId: string) => `results/${id('batchId', batchId)}/summary.json`,

  modelPrefix: (version: string) => `models/${id('version', version)}/`,
  modelFile: (version: string, file: 'model.json' | 'weights.bin' | 'model.onnx' | 'model.int8.onnx' | 'manifest.json') => `models/${id('version', version)}/${file}`,
  modelsRoot: () => 'models/',
  productionChannel: () => 'models/channels/production.json',

  trainCheckpoint: (jobKey: string) => `checkpoints/${id('jobKey', jobKey)}/checkpoint.json`,
  trainCheckpointWeights: (jobKey: string) => `checkpoints/${id('jobKey', jobKey)}/weights.bin`,
};

/** Is `value` usable as an id in keys (dataset names, batch ids, versions)? */
export function isValidId(value: string): boolean {
  return ID.test(value) && !value.includes('..');
}
