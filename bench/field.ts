// `npm run bench:field [FIELD_IMAGE]`: one smear field, field-in to field.json, phase by phase, on this machine.
// Default: the shared NIH field when present, else a synthetic 5312×2988 field in a round window. The model is an
// untrained `fast` net (the cost of inference does not depend on the weights). Prints one JSON line.
import { existsSync } from 'node:fs';
import { readFile } from 'node:fs/promises';
import { OrtCamEngine, buildModel, cropCell, decodeRgb, deepZoom, encodePng, exportOnnx, findCells, generateField, paintCellHeat, resizeRgb, tf, cellForeground } from '@camflow/common';
import { localizeImage } from '../packages/cam-worker/src/localize-image.ts';
import { mkdir, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { submitBatch } from '@camflow/ingest';
import { readResults, waitForBatch } from '../packages/cli/src/wait.ts';
import { publishUntrained, startCluster } from '../test/helpers/cluster.ts';

const arg = process.argv[2] ?? (existsSync('../shared/data/smears/NIH-NLM-ThinBloodSmearsPf_NIH-Pf.jpg') ? '../shared/data/smears/NIH-NLM-ThinBloodSmearsPf_NIH-Pf.jpg' : undefined);
const bytes = arg ? await readFile(arg) : await (async () => {
  const f = generateField(7, { width: 5312, height: 2988, cells: 900 });
  return encodePng(f.rgb, f.width, f.height);
})();
const model = buildModel('fast', 2, 1);
const kernel = model.getLayer('classifier').getWeights()[0]!;
const engine = await OrtCamEngine.create(exportOnnx(model), 64, 2, kernel.dataSync() as Float32Array, { threads: 0 });
const ms: Record<string, number> = {};
const time = async <T>(name: string, f: () => Promise<T>): Promise<T> => {
  const t0 = performance.now();
  const out = await f();
  ms[name] = (ms[name] ?? 0) + performance.now() - t0;
  return out;
};
const runs: Record<string, number>[] = [];
let cells = 0;
for (let run = 0; run < 3; run++) {
  for (const k of Object.keys(ms)) delete ms[k];
  const t0 = performance.now();
  const image = await time('decode', () => decodeRgb(bytes, 268_402_689));
  const found = await time('find_cells', () => findCells(image.data, image.width, image.height));
  cells = found.cells.length;
  const heat = new Uint8Array(image.width * image.height * 4);
  for (let start = 0; start < found.cells.length; start += 128) {
    const batch = found.cells.slice(start, start + 128);
    const inputs = await time('crop_resize', () => Promise.all(batch.map((c, k) => resizeRgb({ data: cropCell(image.data, image.width, found, start + k, c.box), width: c.box.width, height: c.box.height }, 64))));
    const predictions = await time('infer', () => engine.predict(inputs));
    await time('cam', async () =>
      batch.forEach((c, k) => {
        const loc = localizeImage(predictions[k]!, engine.classifierWeights, ['Parasitized', 'Uninfected'], c.box.width, c.box.height, { target: 'Parasitized', fraction: 0.2, minArea: 16, outputs: [], restrictToCell: true, alpha: 0.3, precision: 'fp32', kind: 'auto' }, cellForeground(inputs[k]!, 64, c.box.width, c.box.height));
        paintCellHeat(heat, image.width, c.box, loc.map, () => true);
      }),
    );
  }
  for (const [layer, px, ch] of [['field', image.data, 3], ['heatmap', heat, 4]] as const) {
    const dz = await time(`deep_zoom_${layer}`, () => deepZoom(px, image.width, image.height, ch, layer));
    ms[`deep_zoom_${layer}_files`] = dz.files.length;
    await dz.dispose();
  }
  ms.total = performance.now() - t0;
  runs.push({ ...ms });
}
const median = (k: string) => runs.map((r) => r[k]!).sort((a, b) => a - b)[1]!;
const keys = Object.keys(runs[0]!);
const line = Object.fromEntries(keys.map((k) => [k.endsWith('_files') ? k : `${k}_ms`, Math.round(median(k))]));
const inProcess = { cells, ...line, cells_per_s: Number((cells / (median('total') / 1000)).toFixed(1)), threads: 'ORT default', rss_mb: Math.round(process.resourceUsage().maxRSS / 1024) };
tf.disposeVariables();
await engine.dispose?.();

// Through the pool, as a user runs it: the field submitted (defaults: Deep Zoom pyramids, overlay), its cells out as
// `field-cells` jobs over BENCH_FIELD_WORKERS cam-worker processes, field-in to results.jsonl. Three runs, median.
let pool: Record<string, unknown> | undefined;
if (process.env.BENCH_FIELD_POOL !== '0') {
  const workers = Number(process.env.BENCH_FIELD_WORKERS ?? 2);
  const c = await startCluster({ LOG_LEVEL: 'warn', JOB_LOCK_MS: '30000', STALLED_INTERVAL_MS: '30000' });
  try {
    await publishUntrained(c.ctx);
    for (let w = 0; w < workers; w++) c.spawnWorker('cam');
    const times: number[] = [];
    let parts = 0;
    let found = 0;
    for (let run = 0; run < 3; run++) {
      const folder = join(c.dir, `field-${run}`);
      await mkdir(folder, { recursive: true });
      await writeFile(join(folder, 'field.jpg'), bytes);
      const t0 = performance.now();
      const info = await submitBatch({ store: c.ctx.store, flow: c.ctx.flow, redis: c.ctx.redis, prefix: 'camflow', source: folder, attempts: 3, backoffMs: 1000 });
      await waitForBatch(c.ctx, info.batchId, 600_000);
      times.push(performance.now() - t0);
      const [result] = await readResults(c.ctx.store, info.batchId);
      if (result?.status !== 'ok' || result.kind !== 'field') throw new Error(`the field failed: ${JSON.stringify(result)}`);
      found = result.field.cells;
      parts = (await c.ctx.queues.cam.getJobs(['completed'])).filter((j) => j.name === 'field-cells' && j.data.batchId === info.batchId).length;
    }
    const ms = times.sort((a, b) => a - b)[1]!;
    pool = { workers, cells: found, parts, field_in_to_results_ms: Math.round(ms), cells_per_s: Number((found / (ms / 1000)).toFixed(1)) };
  } finally {
    await c.close();
  }
}
console.log(JSON.stringify({ bench_field: { image: arg ?? 'synthetic 5312×2988', in_process: inProcess, ...(pool ? { pool } : {}) } }));
