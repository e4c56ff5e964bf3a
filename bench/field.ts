// `npm run bench:field [FIELD_IMAGE]`: one smear field, field-in to field.json, phase by phase, on this machine.
// Default: the shared NIH field when present, else a synthetic 5312×2988 field in a round window. The model is an
// untrained `fast` net (the cost of inference does not depend on the weights). Prints one JSON line.
import { existsSync } from 'node:fs';
import { readFile } from 'node:fs/promises';
import { OrtCamEngine, buildModel, cropCell, decodeRgb, deepZoom, encodePng, exportOnnx, findCells, generateField, paintCellHeat, resizeRgb, tf, cellForeground } from '@camflow/common';
import { localizeImage } from '../packages/cam-worker/src/localize-image.ts';

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
console.log(JSON.stringify({ bench_field: { image: arg ?? 'synthetic 5312×2988', cells, ...line, cells_per_s: Number((cells / (median('total') / 1000)).toFixed(1)), threads: 'ORT default', rss_mb: Math.round(process.resourceUsage().maxRSS / 1024) } }));
tf.disposeVariables();
await engine.dispose?.();
