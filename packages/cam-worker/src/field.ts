import { readFile } from 'node:fs/promises';
import sharp, { type Sharp } from 'sharp';
import { UnrecoverableError } from 'bullmq';
import {
  ImageInputError,
  NotFoundError,
  cellForeground,
  createLimiter,
  cropCell,
  decodeRgbPng,
  deepZoom,
  deepZoomOf,
  encodePng,
  fieldCellsJobSchema,
  fieldPlanSchema,
  packInputs,
  paintCellHeat,
  parseWith,
  polygonMask,
  rgbPipeline,
  decodeRegion,
  decodeRgb,
  inspectImage,
  isColourless,
  greyImageRefusal,
  countColour,
  noColour,
  type ColourCount,
  tooLargeToReadWhole,
  defaultPositiveClass,
  fieldGeoJson,
  findCells,
  keys,
  resizeRgb,
  summariseField,
  smallFieldWarning,
  unpackInputs,
  type BatchItem,
  type CamJob,
  type FieldCell,
  type FieldCellsJob,
  type FieldCellsResult,
  type FieldDocument,
  type FieldPlan,
  type ImageResult,
  type CamEngine,
  type LocalizedFieldCell,
  type Logger,
  type ModelManifest,
  type ObjectStore,
  type Precision,
  type RgbImage,
  type Box,
  iou,
  camAtSize,
} from '@camflow/common';
import { localizeImage } from './localize-image.js';
import type { ModelCache } from './model-cache.js';
import { orFailForGood } from './unrecoverable.js';

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

/** What every step of a field needs: the storage, the chunk's job, the model it runs, and where writes go. */
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
  /** Cells per part (`FIELD_CELLS_PER_JOB`): each part is one `field-cells` job. */
  cellsPerJob: number;
  /** Queue a write (observed by the chunk, which awaits them all before it commits). */
  write: (task: () => Promise<void>) => void;
  log: Logger;
}

/** What is wrong with a plan, in the schema's words (zod refuses NaN, which JSON would write as null); undefined when valid. */
function planSchemaProblem(plan: FieldPlan): string | undefined {
  try {
    parseWith(fieldPlanSchema, plan, 'plan');
    return undefined;
  } catch (error) {
    return (error as Error).message;
  }
}

const fieldFailure = (job: CamJob, item: BatchItem, reason: string, error: string): ImageResult => ({ batchId: job.batchId, imageId: item.imageId, name: item.name, status: 'failed', reason, error, modelVersion: job.modelVersion });

/**
 * Step 1 of a smear field: find its red cells and crop each onto black at the model's input size (the training
 * crops' way), in parts of `cellsPerJob` cells written to S3 as input packs; the plan (every cell's box, outline,
 * whether an edge cuts it, and the parts) is written last. A field above `maxFieldPixels` (a whole-slide scan, a
 * tiled TIFF) is read region by region, so memory is bounded by one region and one part, not by the slide. A plan
 * already in S3 (an earlier attempt's) is used as it is. Returns the plan, or the field's failed line
 * (undecodable, too large).
 */
export async function planField(item: BatchItem, ctx: FieldContext): Promise<FieldPlan | ImageResult> {
  const { store, job } = ctx;
  const planKey = keys.fieldPlan(job.batchId, item.imageId);
  const existing = await store.getJsonIfExists(planKey);
  if (existing) return parseWith(fieldPlanSchema, existing, 'field plan');
  const bytes = await store.get(keys.original(item.sha256, item.ext));
  let info: Awaited<ReturnType<typeof inspectImage>>;
  try {
    info = await inspectImage(bytes, ctx.maxSlidePixels);
    tooLargeToReadWhole(info, ctx.maxFieldPixels);
  } catch (error) {
    if (error instanceof ImageInputError) return fieldFailure(job, item, error.reason, error.message);
    throw error;
  }
  const { width, height } = info; // oriented
  const whole = width * height <= ctx.maxFieldPixels;
  const size = ctx.engine.inputSize;
  const cells: FieldPlan['cells'] = [];
  const parts: FieldPlan['parts'] = [];
  let crops: { sha256: string; png: Uint8Array }[] = [];
  const flush = async () => {
    if (crops.length === 0) return;
    const part = parts.length;
    parts.push({ first: cells.length - crops.length, count: crops.length });
    const pack = packInputs(size, crops);
    crops = [];
    await store.put(keys.fieldCellsInput(job.batchId, item.imageId, part), pack, 'application/octet-stream');
  };
  let diameter = job.options.cellDiameter;
  let fov: FieldPlan['fov'];
  let regionCount = 0;
  let whiteCells = 0;
  const colour: ColourCount = { sampled: 0, coloured: 0 };
  const taken = new BoxIndex(512);
  try {
    // Red cells, white cells and parasites are told apart by Giemsa's colours: a grey field would be misread. A field
    // read whole is judged by its pixels; a slide read region by region by how it is stored (one grey channel) before
    // any region is read, and by the pixels of all its regions once they are (grey stored as RGB).
    if (info.grey && !whole) {
      return fieldFailure(job, item, 'greyscale', greyImageRefusal('field', width, height).message);
    }
    const wholeRgb = whole ? await decodeRgb(bytes, ctx.maxSlidePixels) : undefined;
    if (wholeRgb && isColourless(wholeRgb.data)) {
      return fieldFailure(job, item, 'greyscale', `the field has no colour (${width}×${height}: a greyscale image, or no stained cell in view): camflow finds cells and parasites by the Giemsa stain's colours; submit the colour image`);
    }
    const regions: AsyncGenerator<Region> | Region[] = wholeRgb
      ? [{ rgb: wholeRgb, left: 0, top: 0, core: { x0: 0, y0: 0, x1: width, y1: height } }]
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
    for await (const region of regions) {
      regionCount++;
      const { rgb, left, top, core } = region;
      if (!whole) countColour(rgb.data, colour);
      const found = await findCells(rgb.data, rgb.width, rgb.height, diameter !== undefined ? { diameter } : {});
      diameter ??= found.diameter;
      if (whole) fov = found.fov;
      const inCore = ({ x, y }: { x: number; y: number }) => x + left >= core.x0 && x + left < core.x1 && y + top >= core.y0 && y + top < core.y1;
      // White cells whose centroid is in this region's core: each counted once, like the red cells.
      whiteCells += found.whiteCells.filter((c) => inCore(c.centroid)).length;
      // The cells this region owns (centroid in its core), with their index in `found`. Two regions segment a cell
      // on their shared border independently (their own threshold and sampling grid), so its centroid can land in
      // both cores: a cell overlapping one already taken from a neighbouring region (IoU ≥ 0.3) is that cell.
      const owned = found.cells
        .map((c, index) => ({ c, index, box: { x: c.box.x + left, y: c.box.y + top, width: c.box.width, height: c.box.height } }))
        .filter(({ c }) => inCore(c.centroid))
        .filter(({ box }) => whole || !taken.overlaps(box));
      for (const { c, index, box } of owned) {
        taken.add(box);
        const input = await resizeRgb({ data: cropCell(rgb.data, rgb.width, found, index, c.box), width: c.box.width, height: c.box.height }, size);
        crops.push({ sha256: String(cells.length), png: await encodePng(input, size, size) });
        cells.push({ box, polygon: c.polygon.map(([x, y]) => [x + left, y + top] as [number, number]), clipped: c.clipped });
        if (crops.length >= ctx.cellsPerJob) await flush();
      }
    }
  } catch (error) {
    if (error instanceof ImageInputError) return fieldFailure(job, item, error.reason, error.message);
    throw error;
  }
  if (!whole && noColour(colour)) {
    return fieldFailure(job, item, 'greyscale', `the slide has no colour (${width}×${height}, ${regionCount} regions read: a greyscale scan stored as RGB, or no stained cell in it): camflow finds cells and parasites by the Giemsa stain's colours; submit the colour scan`);
  }
  await flush();
  const plan: FieldPlan = { batchId: job.batchId, imageId: item.imageId, width, height, whole, diameter: diameter ?? 0, ...(fov ? { fov } : {}), regions: regionCount, whiteCells, cells, parts };
  // Checked before it is written: a plan the next attempt would refuse fails this field, not its chunk.
  const checked = planSchemaProblem(plan);
  if (checked) return fieldFailure(job, item, 'field-failed', `the field's plan is not valid (${checked}): a defect in camflow's cell finding; please report it with this image`);
  // Written last: a plan in S3 means every part's inputs are there.
  await store.putJson(planKey, plan);
  ctx.log.info({ imageId: item.imageId, cells: cells.length, parts: parts.length, regions: regionCount }, 'field cells found');
  return plan;
}

/** The `field-cells` job of each part of a field. */
export function fieldCellsJobs(plan: FieldPlan, job: CamJob): FieldCellsJob[] {
  return plan.parts.map(({ first, count }, part) => {
    const cells = plan.cells.slice(first, first + count).map((c, k) => ({ cell: first + k, width: c.box.width, height: c.box.height }));
    return { batchId: job.batchId, chunk: job.chunk, imageId: plan.imageId, part, modelVersion: job.modelVersion, options: job.options, cells };
  });
}

export interface FieldCellsContext {
  store: ObjectStore;
  models: ModelCache;
  /** Images per inference run; default: the engine's preferred batch. */
  inferBatch?: number | undefined;
  log: Logger;
}

/**
 * Step 2, one `field-cells` job: classify and localize one part of a field's cells from their stored inputs, and
 * write the part's localizations (in each cell's box; the positive class's CAM at feature resolution for the
 * stitched heatmap). Idempotent: the same inputs give the same object. A cancelled batch's part does nothing.
 */
export async function localizeFieldCells(payload: unknown, ctx: FieldCellsContext): Promise<{ cells: number }> {
  const job: FieldCellsJob = orFailForGood(() => parseWith(fieldCellsJobSchema, payload, 'field-cells job'));
  const { store } = ctx;
  if (await store.exists(keys.batchCancel(job.batchId))) return { cells: 0 };
  const { manifest, engine, precision } = await ctx.models.get(job.modelVersion, job.options.precision).catch((error: unknown) => {
    if (error instanceof NotFoundError) throw new UnrecoverableError(`model ${job.modelVersion}: ${error.message}`);
    throw error;
  });
  const size = engine.inputSize;
  const pack = unpackInputs(await store.get(keys.fieldCellsInput(job.batchId, job.imageId, job.part)));
  if (pack.size !== size) throw new UnrecoverableError(`field ${job.imageId} part ${job.part}: inputs of ${pack.size}² for a model of ${size}²`);
  const inputs = job.cells.map(({ cell }) => {
    const png = pack.inputs.get(String(cell));
    const decoded = png && decodeRgbPng(png);
    if (!decoded || decoded.width !== size || decoded.height !== size) throw new UnrecoverableError(`field ${job.imageId} part ${job.part}: no ${size}² input for cell ${cell}`);
    return decoded.data;
  });
  const positiveClass = manifest.screening?.positiveClass ?? defaultPositiveClass(manifest.classNames);
  const batchSize = ctx.inferBatch ?? engine.preferredBatch;
  const cells: LocalizedFieldCell[] = [];
  for (let start = 0; start < inputs.length; start += batchSize) {
    const batch = inputs.slice(start, start + batchSize);
    const predictions = await engine.predict(batch);
    batch.forEach((input, k) => {
      const { cell, width, height } = job.cells[start + k]!;
      const foreground = job.options.restrictToCell ? cellForeground(input, size, width, height) : undefined;
      const loc = localizeImage(predictions[k]!, engine.classifierWeights, manifest.classNames, width, height, { ...job.options, target: positiveClass }, foreground);
      const cam = loc.cams[0]!;
      cells.push({
        cell,
        predicted: loc.predicted,
        probabilities: loc.probabilities,
        peak: cam.peak,
        parasiteBox: cam.box ? { x: cam.box.x, y: cam.box.y, width: cam.box.width, height: cam.box.height } : null,
        featureCam: cam.featureCam,
        featureSize: loc.featureSize,
      });
    });
  }
  const result: FieldCellsResult = { part: job.part, engine: engine.device, precision, cells };
  await store.putJson(keys.fieldCellsResult(job.batchId, job.imageId, job.part), result);
  ctx.log.info({ batchId: job.batchId, imageId: job.imageId, part: job.part, cells: cells.length }, 'field cells localized');
  return { cells: cells.length };
}

/**
 * Step 3: a field whose parts are all in. Each cell in field coordinates, the parasitemia with its interval, and
 * `field.json`, `cells.geojson`, an overlay and Deep Zoom pyramids of the field and of its stitched CAM heatmap
 * (painted inside each cell's outline). A part that failed for good (`parts[p]` a reason) fails the field, saying
 * which part and why: no parasitemia is computed over cells that were never classified.
 */
export async function assembleField(item: BatchItem, plan: FieldPlan, parts: (FieldCellsResult | string)[], ctx: FieldContext): Promise<ImageResult> {
  const { store, manifest, job } = ctx;
  const t0 = performance.now();
  const lost = parts.findIndex((p) => typeof p === 'string');
  if (lost >= 0) return fieldFailure(job, item, 'cells-failed', `part ${lost} of the field's ${plan.cells.length} cells (${plan.parts.length} parts) failed after its retries: ${parts[lost] as string}`);
  const { width, height, whole } = plan;
  const positiveClass = manifest.screening?.positiveClass ?? defaultPositiveClass(manifest.classNames);
  const wantsPyramids = job.options.outputs.includes('heatmap');
  // The stitched heatmap: at field resolution for a field decoded whole; for a slide, scaled down to MAX_FIELD_PIXELS
  // (the viewer stretches it over the slide).
  const heatScale = whole ? 1 : Math.min(1, Math.sqrt(ctx.maxFieldPixels / (width * height)));
  const heatWidth = Math.max(1, Math.round(width * heatScale));
  const heatHeight = Math.max(1, Math.round(height * heatScale));
  const heat = wantsPyramids ? new Uint8Array(heatWidth * heatHeight * 4) : undefined;
  const cells: FieldCell[] = [];
  for (const part of parts as FieldCellsResult[]) {
    for (const l of part.cells) {
      const { box, polygon, clipped } = plan.cells[l.cell]!;
      if (heat) {
        const inside = polygonMask(polygon, box);
        const { map } = camAtSize(Float32Array.from(l.featureCam), l.featureSize.height, l.featureSize.width, box.height, box.width, inside);
        paintCellHeat(heat, heatWidth, box, map, (x, y) => inside[(y - box.y) * box.width + (x - box.x)] === 1, { scale: heatScale, gain: l.probabilities[positiveClass] ?? 0 });
      }
      cells.push({
        cell: l.cell,
        box,
        polygon,
        clipped,
        predicted: l.predicted,
        probabilities: l.probabilities,
        peak: { x: box.x + l.peak.x, y: box.y + l.peak.y },
        parasiteBox: l.parasiteBox ? { x: box.x + l.parasiteBox.x, y: box.y + l.parasiteBox.y, width: l.parasiteBox.width, height: l.parasiteBox.height } : null,
      });
    }
  }
  cells.sort((a, b) => a.cell - b.cell);
  const counted = summariseField(cells, positiveClass, { diameter: plan.diameter, whiteCells: plan.whiteCells, ...(plan.fov ? { fov: plan.fov } : {}) });
  const warning = smallFieldWarning(job.options.kind, width, height, counted.counted, manifest.cellSide);
  const summary = warning ? { ...counted, warning } : counted;
  const fieldKey = keys.resultField(job.batchId, item.imageId);
  const geojsonKey = keys.resultGeojson(job.batchId, item.imageId);
  const document: FieldDocument = { batchId: job.batchId, imageId: item.imageId, name: item.name, width, height, modelVersion: job.modelVersion, summary, cells };
  ctx.write(() => store.putJson(fieldKey, document));
  ctx.write(() => store.put(geojsonKey, JSON.stringify(fieldGeoJson(cells, positiveClass)), 'application/geo+json'));
  const outputs: { field: string; geojson: string; overlay?: string; fieldDzi?: string; heatmapDzi?: string } = { field: fieldKey, geojson: geojsonKey };
  const wantsOverlay = job.options.outputs.includes('overlay');
  // The field's pixels again, as a libvips pipeline: shrunk for the overlay, streamed for its pyramid.
  const bytes = wantsOverlay || heat ? await store.get(keys.original(item.sha256, item.ext)) : undefined;
  const fieldPipeline = () => rgbPipeline(bytes!, ctx.maxSlidePixels);
  if (wantsOverlay) {
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
  const first = parts[0] as FieldCellsResult | undefined;
  ctx.log.info({ imageId: item.imageId, cells: summary.cells, counted: summary.counted, infected: summary.infected, parts: parts.length, regions: plan.regions, ms: Math.round(performance.now() - t0) }, 'field assembled');
  return { batchId: job.batchId, imageId: item.imageId, name: item.name, status: 'ok', kind: 'field', sha256: item.sha256, width, height, modelVersion: job.modelVersion, precision: first?.precision ?? ctx.precision, engine: first?.engine ?? ctx.engine.device, field: summary, outputs };
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
