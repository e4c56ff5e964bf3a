// `npm run bench:nih-splits [-- --seeds 42,1,2,3,4] [-- --folder DIR]`: how much a patient split moves the
// numbers. The default training recipe (`trainJobSchema`'s defaults: what `camflow train --dataset X --seed S`
// runs) on each seed's patient split of a labelled folder (default: the NIH dev cells), the inputs made by the
// workers' `preprocess`, then accuracy, recall, specificity, ROC AUC and recall at specificity ≥ 0.97 on that
// split's validation patients — and the same without the positives whose pixels show no parasite stain (eval's
// stain audit: `*_stain_supported`). One JSON line per seed, then one with the means. In-process (no queues): the point
// is the spread between splits, which a single 309-cell validation split cannot show.
import { readdir, readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { availableParallelism } from 'node:os';
import { parseArgs } from 'node:util';
import { createLogger, decodeRgb, findStain, initBackend, presets, preprocess, rocAuc, trainJobSchema } from '@camflow/common';
import { fitWithRestarts, gather, predictProbabilities, splitIndices } from '../packages/trainer/src/index.ts';
import { fitParamsFor, gradientEngine } from '../packages/trainer/src/train-job.ts';

const { values: args } = parseArgs({ options: { seeds: { type: 'string', default: '42,1,2,3,4' }, folder: { type: 'string', default: '../shared/data/nih-cells-dev' }, preset: { type: 'string', default: 'fast' } } });
const defaults = trainJobSchema.parse({ dataset: 'bench', preset: args.preset });
const size = presets[defaults.preset].inputSize;
const classes = (await readdir(args.folder, { withFileTypes: true })).filter((d) => d.isDirectory()).map((d) => d.name).sort();
const positive = classes.includes('Parasitized') ? classes.indexOf('Parasitized') : 0;
const items: { path: string; label: number; group: string }[] = [];
for (const [label, c] of classes.entries()) {
  for (const f of (await readdir(join(args.folder, c))).sort()) items.push({ path: join(args.folder, c, f), label, group: /^([A-Za-z]+\d+)/.exec(f)?.[1] ?? f });
}
const per = size * size * 3;
const images = new Uint8Array(items.length * per);
// Whether each original shows parasite stain (eval's stain audit): a positive label without any is one the pixels
// do not support.
const stained: boolean[] = [];
for (const [i, it] of items.entries()) {
  const bytes = await readFile(it.path);
  images.set((await preprocess(bytes, size, undefined, { keepOriginal: false })).input, i * per);
  const rgb = await decodeRgb(bytes);
  stained.push(findStain(rgb.data, rgb.width, rgb.height).boxes.length > 0);
}
const labels = items.map((i) => i.label);
const backend = await initBackend('auto');
const log = createLogger({ level: 'warn' });
const rows: Record<string, number>[] = [];
for (const seed of args.seeds.split(',').map(Number)) {
  const split = splitIndices(items, defaults.validationFraction, seed, 'group');
  const train = gather(images, labels, split.train, size);
  const validation = gather(images, labels, split.validation, size);
  const pool = await gradientEngine({ backend: backend.backend, threads: availableParallelism() }, defaults.preset, classes.length, log);
  const started = Date.now();
  const result = await fitWithRestarts(
    fitParamsFor({ ...defaults, seed }, classes.length),
    train,
    validation,
    pool ? { pool } : {},
  ).finally(() => pool?.close());
  const p = (await predictProbabilities(result.model, validation)).map((x) => x[positive]!);
  result.model.dispose();
  const isPos = Array.from(validation.labels, (l) => l === positive);
  let [tp, tn, fp, fn] = [0, 0, 0, 0];
  p.forEach((v, i) => {
    const call = v >= 0.5;
    if (isPos[i]) call ? tp++ : fn++;
    else call ? fp++ : tn++;
  });
  // Recall at specificity ≥ 0.97: the threshold above all but 3 % of the negatives.
  const negatives = p.filter((_, i) => !isPos[i]).sort((a, b) => b - a);
  const cut = negatives[Math.floor(0.03 * negatives.length)] ?? 1;
  const recallAtSpec97 = p.filter((v, i) => isPos[i] && v > cut).length / Math.max(1, tp + fn);
  const r4 = (v: number) => Math.round(v * 1e4) / 1e4;
  // The same scores without the positives whose pixels show no stain (eval's `*_stain_supported`).
  const supported = split.validation.map((j, i) => !isPos[i] || stained[j]!);
  const kept = p.filter((_, i) => supported[i]);
  const keptPos = isPos.filter((_, i) => supported[i]);
  const keptCorrect = kept.filter((v, i) => (v >= 0.5) === keptPos[i]).length;
  const keptTp = kept.filter((v, i) => keptPos[i] && v >= 0.5).length;
  const positivesWithoutStain = isPos.filter((pos, i) => pos && !supported[i]).length;
  const missesWithoutStain = isPos.filter((pos, i) => pos && !supported[i] && p[i]! < 0.5).length;
  const row = { seed, validation: p.length, patients: new Set(split.validation.map((i) => items[i]!.group)).size, positives: tp + fn, accuracy: r4((tp + tn) / p.length), recall: r4(tp / Math.max(1, tp + fn)), specificity: r4(tn / Math.max(1, tn + fp)), roc_auc: r4(rocAuc(p, isPos)), recall_at_spec_097: r4(recallAtSpec97), positives_without_stain: positivesWithoutStain, misses_without_stain: missesWithoutStain, accuracy_stain_supported: r4(keptCorrect / kept.length), recall_stain_supported: r4(keptTp / Math.max(1, keptPos.filter(Boolean).length)), best_epoch: result.bestEpoch, epochs: result.history.length, seconds: Math.round((Date.now() - started) / 1000) };
  console.log(JSON.stringify(row));
  rows.push(row);
}
const mean = (k: string) => Math.round((rows.reduce((a, r) => a + r[k]!, 0) / rows.length) * 1e4) / 1e4;
const spread = (k: string) => [Math.min(...rows.map((r) => r[k]!)), Math.max(...rows.map((r) => r[k]!))];
console.log(JSON.stringify({ bench_nih_splits: { preset: defaults.preset, backend: backend.backend, seeds: rows.length, accuracy: mean('accuracy'), recall: mean('recall'), specificity: mean('specificity'), roc_auc: mean('roc_auc'), recall_at_spec_097: mean('recall_at_spec_097'), accuracy_stain_supported: mean('accuracy_stain_supported'), recall_stain_supported: mean('recall_stain_supported'), accuracy_range: spread('accuracy'), roc_auc_range: spread('roc_auc') } }));
