import { readFile } from 'node:fs/promises';
import sharp, { type Sharp } from 'sharp';
import {
  ImageInputError,
  cellForeground,
  createLimiter,
  cropCell,
  deepZoom,
  deepZoomOf,
  rgbPipeline,
  paintCellHeat,
  decodeRegion,
  decodeRgb,
  inspectImage,
  tooLargeToReadWhole,
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
  type RgbImage,
  type Box,
  iou,
} from '@camflow/common';
import { localizeImage } from './localize-image.js';

export interface FieldContext {
  store: ObjectStore;
  engine: CamEngine;
  manifest: ModelManifest;
  precision: Precision;
  job: CamJob;
  /** The largest field accepted (`MAX_SLIDE_PIXELS`). */
  maxSlidePixels: number;
  /** Fields up to this size are decoded whole (and get pyramids); larger ones are read region by region. */
  maxFieldPixels: number;
  /** Side of a region's core in the region-by-region path. */
  tile: number;
  /** Images per inference run; default: the engine's preferred batch. */
  inferBatch?: number | undefined;
  /** Queue a write (observed by the chunk, which awaits them all before it commits). */
  write: (task: () => Promise<void>) => void;
  log: Logger;
}

/** Longest side of a field's overlay picture. */
const OVERLAY_SIDE = 2048;

/** Boxes on a coarse grid, to find the ones a new box overlaps without comparing with all of them. */
class BoxIndex {
  private readonly grid = new Map<string, Box[]>();
  constructor(private readonly cell: number) {}
  private keys(b: Box): string[] {
    const out: string[] = [];
    for (let gy = Math.floor(b.y / this.cell); gy <= Math.floor((b.y + b.height) / this.cell); gy++) for (let gx = Math.floor(b.x / this.cell); gx <= Math.floor((b.x + b.width) / this.cell); gx++) out.push(`${gx},${gy}`);
    return out;
  }
  add(b: Box): void {
    for (const k of this.keys(b)) {
      const list = this.grid.get(k);
      if (list) list.push(b);
      else this.grid.set(k, [b]);
    }
  }
  overlaps(b: Box, minIou = 0.3): boolean {
    return this.keys(b).some((k) => (this.grid.get(k) ?? []).some((o) => iou(o, b) >= minIou));
  }
}

/** A piece of a field read at once: its pixels, where it sits, and the core whose cells it owns. */
interface Region {
  rgb: RgbImage;
  left: number;
  top: number;
  /** A cell belongs to this region when its centroid (field pixels) lies in the core: each cell is found once. */
  core: { x0: number; y0: number; x1: number; y1: number };
}

/**
 * The regions of a field larger than `maxFieldPixels`: cores of `tile²` covering it, each read with a margin of 1.6
 * cell diameters (a cell whose centroid is in the core lies wholly inside its region). Decoded one at a time.
 */
export function planRegions(width: number, height: number, tile: number, margin: number): { left: number; top: number; width: number; height: number; core: Region['core'] }[] {
  const out: { left: number; top: number; width: number; height: number; core: Region['core'] }[] = [];
  for (let y0 = 0; y0 < height; y0 += tile) {
    for (let x0 = 0; x0 < width; x0 += tile) {
      const core = { x0, y0, x1: Math.min(width, x0 + tile), y1: Math.min(height, y0 + tile) };
      const left = Math.max(0, x0 - margin);
      const top = Math.max(0, y0 - margin);
      out.push({ left, top, width: Math.min(width, core.x1 + margin) - left, height: Math.min(height, core.y1 + margin) - top, core });
    }
  }
  return out;
}

/**
 * One smear field: find its red cells, crop each onto black at the model's input size (the training crops' way),
 * classify and localize them in inference batches, and write `field.json`, `cells.geojson`, an overlay and Deep Zoom
 * pyramids. A field above `maxFieldPixels` (a whole-slide scan, a tiled TIFF) is read region by region, so memory is
 * bounded by one region, not by the slide. Returns the field's result line: the parasitemia
 * with its interval, or the reason it failed (undecodable, too large).
 */
export async function processField(item: BatchItem, ctx: FieldContext): Promise<ImageResult> {
  const { store, engine, manifest, job } = ctx;
  const failed = (error: ImageInputError): ImageResult => ({ batchId: job.batchId, imageId: item.imageId, name: item.name, status: 'failed', reason: error.reason, error: error.message, modelVersion: job.modelVersion });
  const t0 = performance.now();
  const bytes = await store.get(keys.original(item.sha256, item.ext));
  let info: Awaited<ReturnType<typeof inspectImage>>;
  try {
    info = await inspectImage(bytes, ctx.maxSlidePixels);
    tooLargeToReadWhole(info, ctx.maxFieldPixels);
  } catch (error) {
    if (error instanceof ImageInputError) return failed(error);
    throw error;
  }
  const { width, height } = info; // oriented
  const whole = width * height <= ctx.maxFieldPixels;
  const positiveClass = manifest.screening?.positiveClass ?? defaultPositiveClass(manifest.classNames);
  const size = engine.inputSize;
  const cells: FieldCell[] = [];
  const wantsPyramids = job.options.outputs.includes('heatmap');
  // The stitched heatmap: at field resolution for a field decoded whole; for a slide, scaled down to MAX_FIELD_PIXELS
  // (the viewer stretches it over the slide).
  const heatScale = whole ? 1 : Math.min(1, Math.sqrt(ctx.maxFieldPixels / (width * height)));
  const heatWidth = Math.max(1, Math.round(width * heatScale));
  const heatHeight = Math.max(1, Math.round(height * heatScale));
  let heat: Uint8Array | undefined;
  let fieldImage: RgbImage | undefined;
  let diameter = job.options.cellDiameter;
  let fov: { cx: number; cy: number; r: number } | undefined;
  let regionCount = 0;
  const taken = new BoxIndex(512);
  try {
    const regions: AsyncGenerator<Region> | Region[] = whole
      ? [{ rgb: (fieldImage = await decodeRgb(bytes, ctx.maxSlidePixels)), left: 0, top: 0, core: { x0: 0, y0: 0, x1: width, y1: height } }]
      : (async function* () {
          // The diameter, when not given, is estimated on the central region and kept for all.
          if (diameter === undefined) {
            const side = Math.min(ctx.tile, width, height);
            const probe = await decodeRegion(bytes, { left: Math.floor((width - side) / 2), top: Math.floor((height - side) / 2), width: side, height: side }, ctx.maxSlidePixels);
            diameter = (await findCells(probe.data, probe.width, probe.height)).diameter;
          }
          for (const r of planRegions(width, height, ctx.tile, Math.ceil(1.6 * diameter))) {
            yield { rgb: await decodeRegion(bytes, r, ctx.maxSlidePixels), left: r.left, top: r.top, core: r.core };
          }
        })();
    if (wantsPyramids) heat = new Uint8Array(heatWidth * heatHeight * 4);
    for await (const region of regions) {
      regionCount++;
      const { rgb, left, top, core } = region;
      const found = await findCells(rgb.data, rgb.width, rgb.height, diameter !== undefined ? { diameter } : {});
      diameter ??= found.diameter;
      if (whole) fov = found.fov;
      const labels = found.labels;
      const labelAt = (x: number, y: number) => labels.data[Math.min(labels.height - 1, Math.floor((y + 0.5) * found.scale)) * labels.width + Math.min(labels.width - 1, Math.floor((x + 0.5) * found.scale))]!;
      // The cells this region owns (centroid in its core), with their index in `found`. Two regions segment a cell
      // on their shared border independently (their own threshold and sampling grid), so its centroid can land in
      // both cores: a cell overlapping one already taken from a neighbouring region (IoU ≥ 0.3) is that cell.
      const owned = found.cells
        .map((c, index) => ({ c, index, box: { x: c.box.x + left, y: c.box.y + top, width: c.box.width, height: c.box.height } }))
        .filter(({ c }) => c.centroid.x + left >= core.x0 && c.centroid.x + left < core.x1 && c.centroid.y + top >= core.y0 && c.centroid.y + top < core.y1)
        .filter(({ box }) => whole || !taken.overlaps(box));
      for (const { box } of owned) taken.add(box);
      const batchSize = ctx.inferBatch ?? ctx.engine.preferredBatch;
      for (let start = 0; start < owned.length; start += batchSize) {
        const batch = owned.slice(start, start + batchSize);
        const inputs = await Promise.all(batch.map(({ c, index }) => resizeRgb({ data: cropCell(rgb.data, rgb.width, found, index, c.box), width: c.box.width, height: c.box.height }, size)));
        const predictions = await engine.predict(inputs);
        batch.forEach(({ c, index, box }, k) => {
          const input = inputs[k]!;
          const foreground = job.options.restrictToCell ? cellForeground(input, size, c.box.width, c.box.height) : undefined;
          const loc = localizeImage(predictions[k]!, engine.classifierWeights, manifest.classNames, c.box.width, c.box.height, { ...job.options, target: positiveClass }, foreground);
          const cam = loc.cams[0]!;
          if (heat) paintCellHeat(heat, heatWidth, box, loc.map, (x, y) => labelAt(x - left, y - top) === index + 1, heatScale);
          const probability = loc.probabilities[positiveClass] ?? 0;
          cells.push({
            cell: cells.length,
            box,
            polygon: c.polygon.map(([x, y]) => [x + left, y + top] as [number, number]),
            clipped: c.clipped,
            predicted: loc.predicted,
            probabilities: loc.probabilities,
            ...(manifest.screening ? { screen: { positiveClass, probability, threshold: manifest.screening.threshold, positive: probability >= manifest.screening.threshold } } : {}),
            peak: { x: box.x + cam.peak.x, y: box.y + cam.peak.y },
            parasiteBox: cam.box ? { x: box.x + cam.box.x, y: box.y + cam.box.y, width: cam.box.width, height: cam.box.height } : null,
          });
        });
      }
    }
  } catch (error) {
    if (error instanceof ImageInputError) return failed(error);
    throw error;
  }
  const summary = summariseField(cells, positiveClass, { diameter: diameter ?? 0, ...(fov ? { fov } : {}) });
  const fieldKey = keys.resultField(job.batchId, item.imageId);
  const geojsonKey = keys.resultGeojson(job.batchId, item.imageId);
  const document: FieldDocument = { batchId: job.batchId, imageId: item.imageId, name: item.name, width, height, modelVersion: job.modelVersion, summary, cells };
  ctx.write(() => store.putJson(fieldKey, document));
  ctx.write(() => store.put(geojsonKey, JSON.stringify(fieldGeoJson(cells, positiveClass)), 'application/geo+json'));
  const outputs: { field: string; geojson: string; overlay?: string; fieldDzi?: string; heatmapDzi?: string } = { field: fieldKey, geojson: geojsonKey };
  // A slide read region by region is re-read as a libvips pipeline: shrunk for the overlay, streamed for its pyramid.
  const fieldPipeline = () => (fieldImage ? sharp(fieldImage.data, { raw: { width, height, channels: 3 } }) : rgbPipeline(bytes, ctx.maxSlidePixels));
  if (job.options.outputs.includes('overlay')) {
    const key = (outputs.overlay = keys.resultOverlay(job.batchId, item.imageId));
    const png = await fieldOverlay(fieldPipeline(), width, height, cells, positiveClass);
    ctx.write(() => store.put(key, png, 'image/png'));
  }
  if (heat) {
    const upload = async (layer: 'field' | 'heatmap', dz: Awaited<ReturnType<typeof deepZoomOf>>) => {
      const key = keys.resultDeepZoom(job.batchId, item.imageId, layer);
      const base = key.slice(0, key.lastIndexOf('/') + 1);
      try {
        // Uploaded before the chunk commits (tiles first, the .dzi last): a viewer never sees a pyramid half-written.
        const limit = createLimiter(8);
        await Promise.all(dz.files.filter((x) => !x.path.endsWith('.dzi')).map((f) => limit(async () => store.put(base + f.path, await readFile(f.file), f.path.endsWith('.png') ? 'image/png' : 'image/jpeg'))));
        await store.put(key, await readFile(dz.files.find((x) => x.path.endsWith('.dzi'))!.file), 'application/xml');
      } finally {
        await dz.dispose();
      }
      outputs[layer === 'field' ? 'fieldDzi' : 'heatmapDzi'] = key;
    };
    await upload('field', await deepZoomOf(fieldPipeline(), 3, 'field'));
    await upload('heatmap', await deepZoom(heat, heatWidth, heatHeight, 4, 'heatmap'));
  }
  ctx.log.info({ imageId: item.imageId, cells: summary.cells, counted: summary.counted, infected: summary.infected, regions: regionCount, ms: Math.round(performance.now() - t0) }, 'field localized');
  return { batchId: job.batchId, imageId: item.imageId, name: item.name, status: 'ok', kind: 'field', sha256: item.sha256, width, height, modelVersion: job.modelVersion, precision: ctx.precision, engine: ctx.engine.device, field: summary, outputs };
}

/** The field, shrunk to at most 2048 px, with each cell's outline (red: positive class; green: other; dashed: cut by an edge) and parasite boxes (yellow). */
async function fieldOverlay(image: Sharp, width: number, height: number, cells: FieldCell[], positiveClass: string): Promise<Buffer> {
  const s = Math.min(1, OVERLAY_SIDE / Math.max(width, height));
  const w = Math.max(1, Math.round(width * s));
  const h = Math.max(1, Math.round(height * s));
  const stroke = Math.max(1.5, 3 * s);
  const shapes = cells.map((c) => {
    const colour = c.predicted.label === positiveClass ? '#e02828' : '#3caa4b';
    const points = c.polygon.map(([x, y]) => `${(x * s).toFixed(1)},${(y * s).toFixed(1)}`).join(' ');
    const box = c.parasiteBox && c.predicted.label === positiveClass ? `<rect x="${(c.parasiteBox.x * s).toFixed(1)}" y="${(c.parasiteBox.y * s).toFixed(1)}" width="${(c.parasiteBox.width * s).toFixed(1)}" height="${(c.parasiteBox.height * s).toFixed(1)}" fill="none" stroke="#ffc800" stroke-width="${stroke}"/>` : '';
    return `<polygon points="${points}" fill="none" stroke="${colour}" stroke-width="${stroke}"${c.clipped ? ' stroke-dasharray="6 4"' : ''}/>${box}`;
  });
  const svg = `<svg width="${w}" height="${h}" xmlns="http://www.w3.org/2000/svg">${shapes.join('')}</svg>`;
  const base = await image.resize(w, h, { fit: 'fill' }).png().toBuffer();
  return sharp(base).composite([{ input: Buffer.from(svg) }]).png().toBuffer();
}
