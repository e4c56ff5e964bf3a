// `npm run bench:slide`: a synthetic ~20,000 × 20,000 whole-slide scan (tiled, JPEG-compressed TIFF) through a
// cam-worker's field path, region by region. Prints one JSON line: wall time, cells, and the process's peak RSS.
import { rm, } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import sharp from 'sharp';
import { ObjectStore, buildModel, createLogger, encodePng, exportOnnx, fieldCellsResultSchema, generateField, keys, sha256Hex, startS3, type CamJob } from '@camflow/common';
import { assembleField, fieldCellsJobs, localizeFieldCells, planField } from '../packages/cam-worker/src/field.ts';
import type { ModelCache } from '../packages/cam-worker/src/model-cache.ts';
import { OrtCamEngine } from '@camflow/common';

const across = Number(process.env.ACROSS ?? 14);
const down = Number(process.env.DOWN ?? 20);
const field = generateField(31, { width: 1400, height: 1000, cells: 40, fov: false });
const png = await encodePng(field.rgb, field.width, field.height);
let t0 = performance.now();
const tiff = await sharp(Array.from({ length: across * down }, () => png), { join: { across } }).tiff({ tile: true, tileWidth: 256, tileHeight: 256, compression: 'jpeg', quality: 85, pyramid: true }).toBuffer();
const makeSeconds = (performance.now() - t0) / 1000;
const dir = join(tmpdir(), `camflow-slide-${process.pid}`);
const s3 = await startS3({ dir });
try {
  const store = new ObjectStore({ bucket: s3.bucket, endpoint: s3.endpoint, forcePathStyle: true, credentials: s3.credentials, region: 'us-east-1' });
  await store.ensureBucket();
  const sha = sha256Hex(tiff);
  await store.put(keys.original(sha, 'tiff'), tiff, 'image/tiff');
  const model = buildModel('fast', 2, 1);
  const engine = await OrtCamEngine.create(exportOnnx(model), 64, 2, model.getLayer('classifier').getWeights()[0]!.dataSync() as Float32Array, { threads: 0 });
  const job: CamJob = { batchId: 'bench-slide', chunk: 0, modelVersion: 'm-bench', items: [{ imageId: 'i0000000', name: 'slide.tiff', sha256: sha, ext: 'tiff', width: across * 1400, height: down * 1000, kind: 'field' }], options: { target: 'predicted', fraction: 0.2, minArea: 16, outputs: ['json'], restrictToCell: true, alpha: 0.3, precision: 'fp32', kind: 'fields' } };
  const manifest = { version: 'm-bench', preset: 'fast', inputSize: 64, classNames: ['Parasitized', 'Uninfected'], dataset: { name: 'none', version: 'none', trainItems: 0, validationItems: 0, splitBy: 'item' }, metrics: { valAccuracy: 0, valLoss: 0, epochs: 0, attempts: 0, history: [] }, backend: 'none', createdAt: '', files: [] } as const;
  const writes: Promise<void>[] = [];
  const rssBefore = process.resourceUsage().maxRSS;
  t0 = performance.now();
  // The field's three steps in this process (a worker pool runs the parts as `field-cells` jobs instead).
  const log = createLogger({ level: 'warn', name: 'bench' });
  const ctx = { store, engine, manifest: manifest as never, precision: 'fp32' as const, job, maxSlidePixels: 2_000_000_000, maxFieldPixels: 16_777_216, tile: 4096, cellsPerJob: 256, write: (t: () => Promise<void>) => void writes.push(t()), log };
  const plan = await planField(job.items[0]!, ctx);
  if (!('parts' in plan)) throw new Error(JSON.stringify(plan));
  const models = { get: async () => ({ manifest, engine, precision: 'fp32' }) } as unknown as ModelCache;
  const parts = [];
  for (const part of fieldCellsJobs(plan, job)) {
    await localizeFieldCells(part, { store, models, inferBatch: 128, log });
    parts.push(fieldCellsResultSchema.parse(await store.getJson(keys.fieldCellsResult(job.batchId, part.imageId, part.part))));
  }
  const result = await assembleField(job.items[0]!, plan, parts, ctx);
  await Promise.all(writes);
  const seconds = (performance.now() - t0) / 1000;
  if (result.status !== 'ok' || result.kind !== 'field') throw new Error(JSON.stringify(result));
  console.log(JSON.stringify({ bench_slide: { width: result.width, height: result.height, tiff_mb: Math.round(tiff.length / 1e6), make_s: Number(makeSeconds.toFixed(1)), cells: result.field.cells, seconds: Number(seconds.toFixed(1)), cells_per_s: Number((result.field.cells / seconds).toFixed(1)), peak_rss_mb_before: Math.round(rssBefore / 1024), peak_rss_mb: Math.round(process.resourceUsage().maxRSS / 1024), decoded_rgb_mb_if_whole: Math.round((result.width * result.height * 3) / 1e6) } }));
  engine.dispose?.();
} finally {
  await s3.stop();
  await rm(dir, { recursive: true, force: true });
}
