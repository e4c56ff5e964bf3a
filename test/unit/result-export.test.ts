import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readFile } from 'node:fs/promises';
import { localPath, parseDownloadKinds, resultFileKind } from '../../packages/ingest/src/download.ts';
import { classColour, fieldGeoJson, signedArea2, formatForAccept, imageResultSchema, resultLineJsonSchema, resultsCsv, resultsGeoJson, type ImageResult } from '@camflow/common';

const cell = imageResultSchema.parse({
  batchId: 'b1', imageId: 'i0000000', name: 'Parasitized/a,"b".png', status: 'ok', kind: 'cell', sha256: 'a'.repeat(64), width: 120, height: 110,
  modelVersion: 'm1', precision: 'fp32', engine: 'onnxruntime/cpu',
  predicted: { index: 0, label: 'Parasitized', probability: 0.9 }, probabilities: { Parasitized: 0.9, Uninfected: 0.1 },
  cams: [{ class: 'Parasitized', classIndex: 0, box: { x: 10, y: 20, width: 30, height: 40, area: 900, score: 0.5, peak: 1 }, regions: [], peak: { x: 25, y: 35 }, featureCam: [] }],
  featureSize: { width: 16, height: 16 }, outputs: {},
  screen: { positiveClass: 'Parasitized', probability: 0.9, threshold: 0.05, positive: true },
});
const field = imageResultSchema.parse({
  batchId: 'b1', imageId: 'i0000001', name: 'smear.jpg', status: 'ok', kind: 'field', sha256: 'b'.repeat(64), width: 5312, height: 2988, modelVersion: 'm1', precision: 'fp32',
  field: { positiveClass: 'Parasitized', cells: 191, counted: 177, infected: 8, parasitemia: 8 / 177, interval: [0.023, 0.087], screenPositive: 21, cellDiameter: 110 },
  outputs: { field: 'results/b1/fields/i0000001/field.json', geojson: 'results/b1/fields/i0000001/cells.geojson' },
});
const failed = imageResultSchema.parse({ batchId: 'b1', imageId: 'i0000002', name: '=HYPERLINK("x")', status: 'failed', reason: 'not-an-image', error: 'not an image: bytes 00 01' });
const results: ImageResult[] = [cell, field, failed];

test('CSV: one row per line in order, a probability column per class, quoted per RFC 4180, formulas defused', () => {
  const lines = resultsCsv(results).trimEnd().split('\r\n');
  assert.equal(lines.length, 4);
  const header = lines[0]!.split(',');
  assert.deepEqual(header.slice(0, 11), ['imageId', 'name', 'status', 'kind', 'modelVersion', 'precision', 'engine', 'predicted', 'probability', 'P(Parasitized)', 'P(Uninfected)']);
  assert.ok(lines[1]!.startsWith('i0000000,"Parasitized/a,""b"".png",ok,cell,m1,fp32,onnxruntime/cpu,Parasitized,0.9,0.9,0.1,1,10,20,30,40,25,35'), lines[1]);
  const f = Object.fromEntries(header.map((h, i) => [h, lines[2]!.split(',')[i]]));
  assert.deepEqual([f.kind, f.cells, f.counted, f.infected, f.parasitemia_low, f.parasitemia_high], ['field', '191', '177', '8', '0.023', '0.087']);
  // A cell's screen_positive is 1 or 0; a field has none — the operating point is chosen on crops and does not hold on
  // field cells. A line written before with its count (`screenPositive` 21 above) still reads (the schema keeps the
  // field, deprecated), but the CSV does not show it.
  assert.equal(f.screen_positive, '');
  assert.equal((field as { field: { screenPositive?: number } }).field.screenPositive, 21);
  // Each output as a path under the batch's folder: where `camflow download` puts it (and /v1/batches/:id/files/<path>).
  assert.deepEqual([f.json_file, f.geojson_file, f.overlay_file, f.heatmap_file], ['fields/i0000001/field.json', 'fields/i0000001/cells.geojson', '', '']);
  const drawn = imageResultSchema.parse({ ...cell, name: 'Parasitized/x.png', outputs: { overlay: 'results/b1/i0000000.overlay.png', heatmap: 'results/b1/i0000000.heatmap.png', json: 'results/b1/i0000000.json' } });
  const c = Object.fromEntries(header.map((h, i) => [h, resultsCsv([drawn]).trimEnd().split('\r\n')[1]!.split(',')[i]]));
  assert.deepEqual([c.overlay_file, c.heatmap_file, c.json_file, c.geojson_file], ['i0000000.overlay.png', 'i0000000.heatmap.png', 'i0000000.json', '']);
  assert.deepEqual(header.slice(-5), ['warning', 'overlay_file', 'heatmap_file', 'json_file', 'geojson_file'], 'new columns come last: older readers keep their positions');
  assert.ok(lines[3]!.includes(`"'=HYPERLINK(""x"")"`), 'a name starting with = cannot run as a formula');
  // Probabilities and proportions to 6 significant digits, as a spreadsheet shows them (not 0.2727272727272727).
  const thin = imageResultSchema.parse({ ...cell, name: 'thin.png', predicted: { index: 0, label: 'Parasitized', probability: 1 - 8.245479103526981e-6 }, probabilities: { Parasitized: 1 - 8.245479103526981e-6, Uninfected: 8.245479103526981e-6 } });
  const t = Object.fromEntries(header.map((h, i) => [h, resultsCsv([thin]).trimEnd().split('\r\n')[1]!.split(',')[i]]));
  assert.deepEqual([t.probability, t['P(Parasitized)'], t['P(Uninfected)']], ['0.999992', '0.999992', '0.00000824548']);
  assert.equal(Object.fromEntries(header.map((h, i) => [h, lines[2]!.split(',')[i]])).parasitemia, '0.0451977', '8 / 177');
  assert.ok(lines[3]!.includes('not-an-image'));
});

test('GeoJSON: CAM boxes and peaks of cells in their image pixels, the fields’ own features, failures left out', async () => {
  const asked: string[] = [];
  // Two fields, each with its own `cell-0` (a field's cells.geojson numbers its cells from 0).
  const field2 = imageResultSchema.parse({ ...field, imageId: 'i0000003', name: 'smear2.jpg', outputs: { field: 'results/b1/fields/i0000003/field.json', geojson: 'results/b1/fields/i0000003/cells.geojson' } });
  const fc = await resultsGeoJson([...results, field2], async (r) => {
    asked.push(r.outputs.geojson);
    return [{ type: 'Feature', id: 'cell-0', geometry: { type: 'Polygon', coordinates: [] }, properties: { objectType: 'detection', name: 'cell 0' } }];
  });
  assert.deepEqual(asked, ['results/b1/fields/i0000001/cells.geojson', 'results/b1/fields/i0000003/cells.geojson']);
  const features = fc.features as { id?: string; geometry: { type: string; coordinates: unknown }; properties: Record<string, unknown> }[];
  assert.equal(features.length, 4);
  // One collection, one id per feature: a field's ids are prefixed with its image's id.
  assert.deepEqual(features.map((f) => f.id), ['i0000000-box', 'i0000000-peak', 'i0000001-cell-0', 'i0000003-cell-0']);
  assert.deepEqual(features[0]!.geometry.coordinates, [[[10, 20], [40, 20], [40, 60], [10, 60], [10, 20]]]);
  assert.equal(features[0]!.properties.image, 'Parasitized/a,"b".png');
  // QuPath's classification: a name and a colour, as in a field's cells.geojson.
  assert.deepEqual(features[0]!.properties.classification, { name: 'Parasitized', color: classColour('Parasitized') });
  assert.deepEqual(features[1]!.geometry, { type: 'Point', coordinates: [25, 35] });
  assert.equal(features[2]!.properties.image, 'smear.jpg');
  assert.equal(features[2]!.properties.name, 'cell 0');
});

test("a field's GeoJSON winds every polygon one way (RFC 7946's counterclockwise exterior rings), closed: cell outlines as parasite boxes", () => {
  const box = { x: 0, y: 0, width: 10, height: 10 };
  const cell = { cell: 0, box, clipped: false, predicted: { index: 0, label: 'Parasitized', probability: 0.9 }, probabilities: { Parasitized: 0.9, Uninfected: 0.1 }, peak: { x: 4, y: 4 }, parasiteBox: { x: 2, y: 2, width: 4, height: 4 } };
  const traced = [[0, 0], [0, 10], [10, 10], [10, 0]] as [number, number][]; // as a contour tracer may give it
  assert.ok(signedArea2([...traced, traced[0]!]) < 0, 'the outline starts the other way round');
  const fc = fieldGeoJson([{ ...cell, polygon: traced }], 'Parasitized');
  const rings = (fc.features as { geometry: { coordinates: [number, number][][] } }[]).map((f) => f.geometry.coordinates[0]!);
  assert.equal(rings.length, 2, 'the cell and its parasite box');
  for (const ring of rings) {
    assert.ok(signedArea2(ring) > 0, JSON.stringify(ring));
    assert.deepEqual(ring[0], ring[ring.length - 1], 'closed');
  }
  assert.deepEqual(new Set(rings[0]!.map(String)), new Set(traced.map(String)), 'the same outline');
});

test('HTTP Accept picks the format; JSONL otherwise', () => {
  assert.equal(formatForAccept('text/csv'), 'csv');
  assert.equal(formatForAccept('application/geo+json, */*;q=0.1'), 'geojson');
  assert.equal(formatForAccept('*/*'), 'jsonl');
  assert.equal(formatForAccept(undefined), 'jsonl');
});

test('docs/result-line.schema.json is the JSON Schema generated from the result line’s zod schema (run `npm run schema`)', async () => {
  const committed = JSON.parse(await readFile(new URL('../../docs/result-line.schema.json', import.meta.url), 'utf8'));
  assert.deepEqual(committed, resultLineJsonSchema());
  const text = JSON.stringify(committed);
  for (const word of ['featureCam', 'regions', 'original-image pixels', 'parasitemia']) assert.ok(text.includes(word), word);
});

test("a stored result file's kind, for `camflow download --only`, comes from its path under the batch's prefix; chunk records are never downloaded", () => {
  assert.equal(resultFileKind('results.jsonl'), 'results');
  assert.equal(resultFileKind('summary.json'), 'results');
  assert.equal(resultFileKind('i0000003.json'), 'json');
  assert.equal(resultFileKind('i0000003.heatmap.png'), 'heatmap');
  assert.equal(resultFileKind('i0000003.overlay.png'), 'overlay');
  assert.equal(resultFileKind('fields/i0000004/field.json'), 'fields');
  assert.equal(resultFileKind('fields/i0000004/cells.geojson'), 'fields');
  assert.equal(resultFileKind('fields/i0000004/heatmap.dzi'), 'tiles');
  assert.equal(resultFileKind('fields/i0000004/field_files/11/3_2.jpeg'), 'tiles');
  assert.equal(resultFileKind('chunks/000001.jsonl'), undefined);
  assert.equal(resultFileKind('chunks/000001.failed.json'), undefined);
  assert.equal(resultFileKind('notes.txt'), 'other', 'a file this version does not know is downloaded with everything, never silently dropped');
  assert.deepEqual(parseDownloadKinds('results, fields', '--only'), ['results', 'fields']);
  assert.throws(() => parseDownloadKinds('overlays', '--only'), /did you mean "overlay"\?\) for --only but received "overlays"/);
  assert.throws(() => parseDownloadKinds(',', '--only'), /Expected a comma list of results, json, heatmap, overlay, fields, tiles for --only but received ","/);
});

test('a downloaded key becomes a file under the folder, or is skipped saying why: folder markers and paths leading out of it', () => {
  assert.deepEqual(localPath('/data/b1', 'fields/i0000004/cells.geojson'), { file: '/data/b1/fields/i0000004/cells.geojson' });
  assert.deepEqual(localPath('/data/b1', '..notes.txt'), { file: '/data/b1/..notes.txt' }, 'a name starting with two dots stays inside');
  assert.deepEqual(localPath('/data/b1', 'fields/'), { skip: 'a folder marker, not a file' });
  assert.deepEqual(localPath('/data/b1', ''), { skip: 'a folder marker, not a file' });
  assert.deepEqual(localPath('/data/b1', '../../etc/passwd'), { skip: 'its path leads out of /data/b1' });
  assert.deepEqual(localPath('/data/b1', 'fields/../../b2/x.json'), { skip: 'its path leads out of /data/b1' });
  assert.deepEqual(localPath('/data/b1', '/etc/passwd'), { skip: 'its path leads out of /data/b1' });
});
