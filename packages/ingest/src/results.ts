import { Readable } from 'node:stream';
import {
  NotFoundError,
  RESULT_MEDIA_TYPES,
  batchInfoSchema,
  csvHeader,
  csvRow,
  featuresOf,
  getModelManifest,
  imageResultSchema,
  keys,
  parseJsonLine,
  parseWith,
  type FieldResult,
  type ImageResult,
  type ObjectStore,
  type ResultFormat,
} from '@camflow/common/core';

/** A batch's result lines, parsed as they stream from S3 (errors name results.jsonl and the line). */
export async function* batchResultLines(store: ObjectStore, batchId: string): AsyncGenerator<ImageResult> {
  const key = keys.resultsJsonl(batchId);
  let n = 0;
  for await (const raw of store.lines(key)) {
    n++;
    if (raw.trim() !== '') yield parseJsonLine(raw, n, imageResultSchema, key);
  }
}

/**
 * A finished batch's results in one of the export formats, as a stream (memory: one line at a time, whatever the
 * batch's size); undefined while it has no results.jsonl yet. CSV columns: the batch's model's classes.
 */
export async function exportBatchResults(store: ObjectStore, batchId: string, format: ResultFormat): Promise<{ body: Readable; type: string } | undefined> {
  const key = keys.resultsJsonl(batchId);
  if (!(await store.exists(key))) return undefined;
  const type = RESULT_MEDIA_TYPES[format];
  if (format === 'jsonl') {
    return { body: Readable.from((async function* () { for await (const raw of store.lines(key)) if (raw.trim() !== '') yield `${raw}\n`; })()), type };
  }
  if (format === 'csv') {
    const info = parseWith(batchInfoSchema, await store.getJson(keys.batchInfo(batchId)), 'batch info');
    const classes = (await getModelManifest(store, info.modelVersion)).classNames;
    return { body: Readable.from((async function* () { yield csvHeader(classes); for await (const r of batchResultLines(store, batchId)) yield csvRow(r, classes); })()), type };
  }
  const fieldFeatures = async (r: FieldResult) => {
    const doc = await store.getJsonIfExists(r.outputs.geojson);
    if (!doc) throw new NotFoundError('field GeoJSON', r.outputs.geojson);
    return (doc as { features?: unknown[] }).features ?? [];
  };
  async function* geojson() {
    yield '{"type":"FeatureCollection","features":[';
    let first = true;
    for await (const r of batchResultLines(store, batchId)) {
      for (const f of await featuresOf(r, fieldFeatures)) {
        yield `${first ? '' : ','}${JSON.stringify(f)}`;
        first = false;
      }
    }
    yield ']}\n';
  }
  return { body: Readable.from(geojson()), type };
}
