import { NotFoundError, imageResultSchema, keys, parseJsonLines, resultsCsv, resultsGeoJson, RESULT_MEDIA_TYPES, type ImageResult, type ObjectStore, type ResultFormat } from '@camflow/common';

/** A finished batch's results in one of the export formats; undefined while it has no results.jsonl yet. */
export async function exportBatchResults(store: ObjectStore, batchId: string, format: ResultFormat): Promise<{ body: string | Buffer; type: string } | undefined> {
  const key = keys.resultsJsonl(batchId);
  const raw = await store.getIfExists(key);
  if (!raw) return undefined;
  const type = RESULT_MEDIA_TYPES[format];
  if (format === 'jsonl') return { body: raw, type };
  const results: ImageResult[] = parseJsonLines(raw.toString('utf8'), imageResultSchema, key);
  if (format === 'csv') return { body: resultsCsv(results), type };
  const collection = await resultsGeoJson(results, async (r) => {
    const doc = await store.getJsonIfExists(r.outputs.geojson);
    if (!doc) throw new NotFoundError('field GeoJSON', r.outputs.geojson);
    return (doc as { features?: unknown[] }).features ?? [];
  });
  return { body: `${JSON.stringify(collection)}\n`, type };
}
