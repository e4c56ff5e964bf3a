// `node --import tsx bench/fields-synthetic.ts` after `npm run demo`: the parasitemia error of cell finding + the
// demo's model on synthetic fields (SEEDS, default the demo's two and eight more; even positions in a round window),
// in one process: findCells → cropCell → ONNX Runtime, argmax, cells cut by an edge not counted. Reads the demo's
// s3rver folder (camflow-demo/s3, copied). Prints one JSON line; VERBOSE=1 lists each wrong cell.
import { cp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { ObjectStore, createLogger, cropCell, findCells, generateField, getProduction, iou, resizeRgb, softmax, startS3 } from '@camflow/common';
import { ModelCache } from '../packages/cam-worker/src/model-cache.ts';
await rm(join(tmpdir(), 'camflow-demo-s3-copy'), { recursive: true, force: true });
await cp('camflow-demo/s3', join(tmpdir(), 'camflow-demo-s3-copy'), { recursive: true });
const s3 = await startS3({ dir: join(tmpdir(), 'camflow-demo-s3-copy') });
const store = new ObjectStore({ bucket: s3.bucket, endpoint: s3.endpoint, forcePathStyle: true, credentials: s3.credentials, region: 'us-east-1' });
const log = createLogger({ level: 'warn', name: 'loop' });
const models = new ModelCache(store, log, { kind: 'onnx', threads: 0 });
const prod = await getProduction(store);
const { engine, manifest } = await models.get(prod!.version);
const errors: number[] = [];
const seeds = (process.env.SEEDS ?? '18,19,21,22,23,24,25,26,27,28').split(',').map(Number);
for (const [i, f] of seeds.map((sd, k) => generateField(sd, { fov: k % 2 === 0 })).entries()) {
  const found = await findCells(f.rgb, f.width, f.height);
  const inputs = await Promise.all(found.cells.map((c, k) => resizeRgb({ data: cropCell(f.rgb, f.width, found, k, c.box), width: c.box.width, height: c.box.height }, engine.inputSize)));
  const preds = await engine.predict(inputs);
  const pos = manifest.classNames.indexOf('Parasitized');
  let counted = 0, infected = 0;
  found.cells.forEach((c, k) => {
    const p = softmax(preds[k]!.logits)[pos]!;
    if (c.clipped) return;
    counted++;
    if (p > 0.5) infected++;
    let best = 0;
    let t: (typeof f.cells)[number] | undefined;
    for (const tt of f.cells) {
      const v = iou(c.box, tt.box);
      if (v > best) {
        best = v;
        t = tt;
      }
    }
    if (process.env.VERBOSE && (p > 0.5) !== (t?.label === 'Parasitized')) console.log(`  field ${i} cell ${k} ${JSON.stringify(c.box)} p ${p.toFixed(3)} truth ${t?.label} iou ${best.toFixed(2)}`);
  });
  const whole = f.cells.filter((t) => t.visible >= 0.999);
  const truth = whole.filter((t) => t.label === 'Parasitized').length / whole.length;
  errors.push(Math.abs(infected / counted - truth) * 100);
  if (process.env.VERBOSE) console.log(`field ${i}: ${infected}/${counted} = ${((100 * infected) / counted).toFixed(2)} vs ${(100 * truth).toFixed(2)}`);
}
console.log(JSON.stringify({ fields_synthetic: { seeds, model: prod!.version, parasitemia_abs_error_points: errors.map((e) => Number(e.toFixed(2))), mean: Number((errors.reduce((a, b) => a + b) / errors.length).toFixed(2)) } }));
models.dispose();
await s3.stop();
await rm(join(tmpdir(), 'camflow-demo-s3-copy'), { recursive: true, force: true });
