import { readFile } from 'node:fs/promises';
import sharp from 'sharp';
import {
  ImageInputError,
  cellForeground,
  createLimiter,
  cropCell,
  deepZoom,
  paintCellHeat,
  decodeRgb,
  defaultPositiveClass,
  fieldGeoJson,
  findCells,
  keys,
  resizeRgb,
  summariseField,
  type BatchItem,
  type CamJob,
  type FieldCell,
  type FieldDocument,
  type ImageResult,
  type CamEngine,
  type Logger,
  type ModelManifest,
  type ObjectStore,
  type Precision,
} from '@camflow/common';
import { localizeImage } from './localize-image.js';

export interface FieldContext {
  store: ObjectStore;
  engine: CamEngine;
  manifest: ModelManifest;
  precision: Precision;
  job: CamJob;
  maxPixels: number;
  inferBatch: number;
  /** Queue a write (observed by the chunk, which awaits them all before it commits). */
  write: (task: () => Promise<void>) => void;
  log: Logger;
}

/** Longest side of a field's overlay picture. */
const OVERLAY_SIDE = 2048;

/**
 * One smear field: find its red cells, crop each onto black at the model's input size (the training crops' way),
 * classify and localize them in inference batches, and write `field.json`, `cells.geojson` and an overlay. Returns
 * the field's result line: the parasitemia with its interval, or the reason it failed (undecodable, too large).
 */
export async function processField(item: BatchItem, ctx: FieldContext): Promise<ImageResult> {
  const { store, engine, manifest, job } = ctx;
  const failed = (error: ImageInputError): ImageResult => ({ batchId: job.batchId, imageId: item.imageId, name: item.name, status: 'failed', reason: error.reason, error: error.message, modelVersion: job.modelVersion });
  let image;
  try {
    image = await decodeRgb(await store.get(keys.original(item.sha256, item.ext)), ctx.maxPixels);
  } catch (error) {
    if (error instanceof ImageInputError) return failed(error);
    throw error;
  }
  const t0 = performance.now();
  const found = await findCells(image.data, image.width, image.height, job.options.cellDiameter !== undefined ? { diameter: job.options.cellDiameter } : {});
  const positiveClass = manifest.screening?.positiveClass ?? defaultPositiveClass(manifest.classNames);
  const size = engine.inputSize;
  const cells: FieldCell[] = [];
  // The Deep Zoom heatmap: each cell's CAM painted on its own pixels, transparent elsewhere.
  const wantsPyramids = job.options.outputs.includes('heatmap');
  const heat = wantsPyramids ? new Uint8Array(image.width * image.height * 4) : undefined;
  const labels = found.labels;
  const labelAt = (x: number, y: number) => labels.data[Math.min(labels.height - 1, Math.floor((y + 0.5) * found.scale)) * labels.width + Math.min(labels.width - 1, Math.floor((x + 0.5) * found.scale))]!;
  for (let start = 0; start < found.cells.length; start += ctx.inferBatch) {
    const batch = found.cells.slice(start, start + ctx.inferBatch);
    const inputs = await Promise.all(batch.map((c, k) => resizeRgb({ data: cropCell(image.data, image.width, found, start + k, c.box), width: c.box.width, height: c.box.height }, size)));
    const predictions = await engine.predict(inputs);
    batch.forEach((c, k) => {
      const input = inputs[k]!;
      const foreground = job.options.restrictToCell ? cellForeground(input, size, c.box.width, c.box.height) : undefined;
      const loc = localizeImage(predictions[k]!, engine.classifierWeights, manifest.classNames, c.box.width, c.box.height, { ...job.options, target: positiveClass }, foreground);
      const cam = loc.cams[0]!;
      if (heat) paintCellHeat(heat, image.width, c.box, loc.map, (x, y) => labelAt(x, y) === start + k + 1);
      const probability = loc.probabilities[positiveClass] ?? 0;
      cells.push({
        cell: start + k,
        box: c.box,
        polygon: c.polygon,
        clipped: c.clipped,
        predicted: loc.predicted,
        probabilities: loc.probabilities,
        ...(manifest.screening ? { screen: { positiveClass, probability, threshold: manifest.screening.threshold, positive: probability >= manifest.screening.threshold } } : {}),
        peak: { x: c.box.x + cam.peak.x, y: c.box.y + cam.peak.y },
        parasiteBox: cam.box ? { x: c.box.x + cam.box.x, y: c.box.y + cam.box.y, width: cam.box.width, height: cam.box.height } : null,
      });
    });
  }
  const summary = summariseField(cells, positiveClass, found);
  const fieldKey = keys.resultField(job.batchId, item.imageId);
  const geojsonKey = keys.resultGeojson(job.batchId, item.imageId);
  const document: FieldDocument = { batchId: job.batchId, imageId: item.imageId, name: item.name, width: image.width, height: image.height, modelVersion: job.modelVersion, summary, cells };
  ctx.write(() => store.putJson(fieldKey, document));
  ctx.write(() => store.put(geojsonKey, JSON.stringify(fieldGeoJson(cells, positiveClass)), 'application/geo+json'));
  const outputs: { field: string; geojson: string; overlay?: string; fieldDzi?: string; heatmapDzi?: string } = { field: fieldKey, geojson: geojsonKey };
  if (job.options.outputs.includes('overlay')) {
    const key = (outputs.overlay = keys.resultOverlay(job.batchId, item.imageId));
    const png = await fieldOverlay(image, cells, positiveClass);
    ctx.write(() => store.put(key, png, 'image/png'));
  }
  if (heat) {
    for (const [layer, pixels, channels] of [['field', image.data, 3], ['heatmap', heat, 4]] as const) {
      const key = keys.resultDeepZoom(job.batchId, item.imageId, layer);
      const base = key.slice(0, key.lastIndexOf('/') + 1);
      const dz = await deepZoom(pixels, image.width, image.height, channels, layer);
      try {
        // Uploaded before the chunk commits (tiles first, the .dzi last): a viewer never sees a pyramid half-written.
        const limit = createLimiter(8);
        await Promise.all(dz.files.filter((x) => !x.path.endsWith('.dzi')).map((f) => limit(async () => store.put(base + f.path, await readFile(f.file), f.path.endsWith('.png') ? 'image/png' : 'image/jpeg'))));
        await store.put(key, await readFile(dz.files.find((x) => x.path.endsWith('.dzi'))!.file), 'application/xml');
      } finally {
        await dz.dispose();
      }
      outputs[layer === 'field' ? 'fieldDzi' : 'heatmapDzi'] = key;
    }
  }
  ctx.log.info({ imageId: item.imageId, cells: summary.cells, counted: summary.counted, infected: summary.infected, ms: Math.round(performance.now() - t0) }, 'field localized');
  return { batchId: job.batchId, imageId: item.imageId, name: item.name, status: 'ok', kind: 'field', sha256: item.sha256, width: image.width, height: image.height, modelVersion: job.modelVersion, precision: ctx.precision, field: summary, outputs };
}

/** The field, shrunk to at most 2048 px, with each cell's outline (red: positive class; green: other; dashed: cut by an edge) and parasite boxes (yellow). */
async function fieldOverlay(image: { data: Uint8Array; width: number; height: number }, cells: FieldCell[], positiveClass: string): Promise<Buffer> {
  const s = Math.min(1, OVERLAY_SIDE / Math.max(image.width, image.height));
  const w = Math.max(1, Math.round(image.width * s));
  const h = Math.max(1, Math.round(image.height * s));
  const stroke = Math.max(1.5, 3 * s);
  const shapes = cells.map((c) => {
    const colour = c.predicted.label === positiveClass ? '#e02828' : '#3caa4b';
    const points = c.polygon.map(([x, y]) => `${(x * s).toFixed(1)},${(y * s).toFixed(1)}`).join(' ');
    const box = c.parasiteBox && c.predicted.label === positiveClass ? `<rect x="${(c.parasiteBox.x * s).toFixed(1)}" y="${(c.parasiteBox.y * s).toFixed(1)}" width="${(c.parasiteBox.width * s).toFixed(1)}" height="${(c.parasiteBox.height * s).toFixed(1)}" fill="none" stroke="#ffc800" stroke-width="${stroke}"/>` : '';
    return `<polygon points="${points}" fill="none" stroke="${colour}" stroke-width="${stroke}"${c.clipped ? ' stroke-dasharray="6 4"' : ''}/>${box}`;
  });
  const svg = `<svg width="${w}" height="${h}" xmlns="http://www.w3.org/2000/svg">${shapes.join('')}</svg>`;
  const base = await sharp(image.data, { raw: { width: image.width, height: image.height, channels: 3 } }).resize(w, h).png().toBuffer();
  return sharp(base).composite([{ input: Buffer.from(svg) }]).png().toBuffer();
}
