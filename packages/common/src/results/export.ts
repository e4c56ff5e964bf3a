import { z } from 'zod';
import { keys } from '../storage/keys.js';
import { classColour } from '../fields/summary.js';
import { imageResultSchema, type FieldResult, type ImageResult, type OkResult } from '../queues/contracts.js';

/** The formats a batch's results can be read in: `camflow results --format`, HTTP `Accept` / `?format=`. */
export const RESULT_FORMATS = ['jsonl', 'csv', 'geojson'] as const;
export type ResultFormat = (typeof RESULT_FORMATS)[number];

export const RESULT_MEDIA_TYPES: Record<ResultFormat, string> = {
  jsonl: 'application/x-ndjson',
  csv: 'text/csv; charset=utf-8',
  geojson: 'application/geo+json',
};

/** Pure: the format an HTTP `Accept` header asks for (first listed that camflow serves; JSONL otherwise). */
export function formatForAccept(accept: string | undefined): ResultFormat {
  for (const part of (accept ?? '').split(',')) {
    const type = part.split(';')[0]!.trim().toLowerCase();
    if (type === 'text/csv') return 'csv';
    if (type === 'application/geo+json') return 'geojson';
    if (type === 'application/x-ndjson' || type === 'application/jsonl' || type === 'application/json') return 'jsonl';
  }
  return 'jsonl';
}

/** The JSON Schema of one `results.jsonl` line, generated from its zod schema (published as docs/result-line.schema.json). */
export function resultLineJsonSchema(): Record<string, unknown> {
  return {
    $id: 'https://camflow.dev/schemas/result-line.json',
    title: 'camflow result line (one line of results.jsonl)',
    ...(z.toJSONSchema(imageResultSchema, { io: 'output', target: 'draft-2020-12' }) as Record<string, unknown>),
  };
}

/** RFC 4180 quoting; a text cell starting with = + - @ is prefixed with ' so spreadsheets never run it as a formula. */
function csvCell(value: unknown, text = false): string {
  if (value === undefined || value === null) return '';
  let s = String(value);
  if (text && /^[=+\-@\t\r]/.test(s)) s = `'${s}`;
  return /[",\r\n]/.test(s) ? `"${s.replace(/"/g, '""')}"` : s;
}

const CSV_COLUMNS = [
  'imageId', 'name', 'status', 'kind', 'modelVersion', 'precision', 'engine', 'predicted', 'probability',
  'screen_positive', 'box_x', 'box_y', 'box_width', 'box_height', 'peak_x', 'peak_y',
  'cells', 'counted', 'infected', 'parasitemia', 'parasitemia_low', 'parasitemia_high', 'reason', 'error',
  'warning', 'overlay_file', 'heatmap_file', 'json_file', 'geojson_file',
] as const;

/**
 * A stored output as a path under the batch's folder (`results/<batchId>/` off): where `camflow download` puts it, and
 * the `<path>` of `GET /v1/batches/:id/files/<path>`.
 * @example batchFilePath('b1', 'results/b1/fields/i0000001/cells.geojson') // 'fields/i0000001/cells.geojson'
 */
export function batchFilePath(batchId: string, key: string | undefined): string | undefined {
  const prefix = keys.resultPrefix(batchId);
  return key === undefined ? undefined : key.startsWith(prefix) ? key.slice(prefix.length) : key;
}

/** A probability or proportion in a CSV cell: 6 significant digits (0.272727, 8.24548e-6), not 17. */
const sig6 = (x: number | undefined) => (x === undefined ? undefined : Number(x.toPrecision(6)));

/** The predicted class's localization (its box and CAM peak), in the image's pixels. */
function predictedCam(r: OkResult) {
  return r.cams.find((c) => c.classIndex === r.predicted.index) ?? r.cams[0];
}

/** Pure: the CSV header for a model's classes (a `P(<class>)` column each). */
export function csvHeader(classes: readonly string[]): string {
  return `${[...CSV_COLUMNS.slice(0, 9), ...classes.map((c) => `P(${c})`), ...CSV_COLUMNS.slice(9)].map((h) => csvCell(h)).join(',')}\r\n`;
}

/**
 * Pure: one result line as a CSV row. Cells give their class, probability, screening call (`screen_positive` 1 / 0),
 * the predicted class's box and CAM peak (image pixels); fields their counts and parasitemia with its 95 % interval
 * (no screening call: the operating point is chosen on crops); failures their reason.
 */
export function csvRow(r: ImageResult, classes: readonly string[]): string {
  const header = [...CSV_COLUMNS.slice(0, 9), ...classes.map((c) => `P(${c})`), ...CSV_COLUMNS.slice(9)];
  const row: Record<string, unknown> = { imageId: r.imageId, name: r.name, status: r.status, modelVersion: r.modelVersion };
  if (r.status === 'failed') Object.assign(row, { reason: r.reason, error: r.error });
  else if (r.kind === 'field') {
    const f = (r as FieldResult).field;
    const o = (r as FieldResult).outputs;
    Object.assign(row, {
      kind: 'field', precision: r.precision, engine: r.engine, cells: f.cells, counted: f.counted, infected: f.infected, parasitemia: sig6(f.parasitemia), parasitemia_low: sig6(f.interval[0]), parasitemia_high: sig6(f.interval[1]),
      warning: f.warning, overlay_file: batchFilePath(r.batchId, o.overlay), json_file: batchFilePath(r.batchId, o.field), geojson_file: batchFilePath(r.batchId, o.geojson),
    });
  } else {
    const cam = predictedCam(r);
    Object.assign(row, {
      kind: 'cell', precision: r.precision, engine: r.engine, predicted: r.predicted.label, probability: sig6(r.predicted.probability),
      screen_positive: r.screen ? (r.screen.positive ? 1 : 0) : undefined,
      box_x: cam?.box?.x, box_y: cam?.box?.y, box_width: cam?.box?.width, box_height: cam?.box?.height, peak_x: cam?.peak.x, peak_y: cam?.peak.y,
      overlay_file: batchFilePath(r.batchId, r.outputs.overlay), heatmap_file: batchFilePath(r.batchId, r.outputs.heatmap), json_file: batchFilePath(r.batchId, r.outputs.json),
    });
    for (const c of classes) row[`P(${c})`] = sig6(r.probabilities[c]);
  }
  return `${header.map((h) => csvCell(row[h], h === 'name' || h === 'error' || h === 'warning')).join(',')}\r\n`;
}

/** Pure: a whole batch as CSV, one row per result line in the same order (classes: those seen in the lines). */
export function resultsCsv(results: readonly ImageResult[]): string {
  const classes = [...new Set(results.flatMap((r) => (r.status === 'ok' && r.kind === 'cell' ? Object.keys(r.probabilities) : [])))];
  return csvHeader(classes) + results.map((r) => csvRow(r, classes)).join('');
}

const rect = (b: { x: number; y: number; width: number; height: number }) => [[b.x, b.y], [b.x + b.width, b.y], [b.x + b.width, b.y + b.height], [b.x, b.y + b.height], [b.x, b.y]];

/**
 * The GeoJSON features of one result line. Every feature's coordinates are pixels of the image its
 * `properties.image` names (x right, y down, as QuPath reads them): per cell crop, the predicted class's CAM box as a
 * `detection` (plus its CAM peak as a point); per field, the features of its `cells.geojson` (cell outlines and
 * parasite boxes, their ids prefixed with the image's id), given by `fieldFeatures`; failures have none (they are in the JSONL and CSV).
 */
export async function featuresOf(r: ImageResult, fieldFeatures: (r: FieldResult) => Promise<unknown[]>): Promise<unknown[]> {
  if (r.status !== 'ok') return [];
  if (r.kind === 'field') {
    // A field's own ids (`cell-0`, …) repeat from field to field: in one collection they are its image's.
    return (await fieldFeatures(r as FieldResult)).map((f) => {
      const feature = f as { id?: unknown; properties?: Record<string, unknown> };
      return { ...feature, ...(feature.id !== undefined ? { id: `${r.imageId}-${String(feature.id)}` } : {}), properties: { ...feature.properties, image: r.name, imageId: r.imageId } };
    });
  }
  const cam = predictedCam(r);
  const properties = {
    image: r.name,
    imageId: r.imageId,
    objectType: 'detection',
    classification: { name: r.predicted.label, color: classColour(r.predicted.label) },
    measurements: { probability: r.predicted.probability, ...(r.screen ? { 'screen positive': r.screen.positive ? 1 : 0 } : {}) },
  };
  const out: unknown[] = [];
  if (cam?.box) out.push({ type: 'Feature', id: `${r.imageId}-box`, geometry: { type: 'Polygon', coordinates: [rect(cam.box)] }, properties });
  if (cam) out.push({ type: 'Feature', id: `${r.imageId}-peak`, geometry: { type: 'Point', coordinates: [cam.peak.x, cam.peak.y] }, properties: { ...properties, objectType: 'annotation', name: 'CAM peak' } });
  return out;
}

/** A batch as one GeoJSON FeatureCollection (see `featuresOf`). */
export async function resultsGeoJson(results: readonly ImageResult[], fieldFeatures: (r: FieldResult) => Promise<unknown[]>): Promise<{ type: 'FeatureCollection'; features: unknown[] }> {
  const features: unknown[] = [];
  for (const r of results) features.push(...(await featuresOf(r, fieldFeatures)));
  return { type: 'FeatureCollection', features };
}
