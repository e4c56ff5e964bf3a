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
import { classificationReport, createLogger, decodeRgb, findStain, initBackend, presets, preprocess, trainJobSchema, type LabelledPrediction } from '@camflow/common';
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
  // Scored as `camflow eval` scores: argmax of the two classes, P(positive) for the ROC curve.
  const [posName, negName] = [classes[positive]!, classes.find((_, k) => k !== positive)!];
  const predictions: LabelledPrediction[] = p.map((v, i) => ({ truth: isPos[i] ? posName : negName, predicted: v >= 0.5 ? posName : negName, probability: v, confidence: Math.max(v, 1 - v) }));
  const all = classificationReport(predictions, classes, posName);
  const positives = isPos.filter(Boolean).length;
  // The same scores without the positives whose pixels show no stain (eval's `*_stain_supported`).
  const supported = split.validation.map((j, i) => !isPos[i] || stained[j]!);
  const onSupported = classificationReport(predictions.filter((_, i) => supported[i]), classes, posName);
  // A validation split without both classes has no recall / specificity: NaN, printed as null, never a 0.
  const r4 = (v: number | null) => (v === null ? Number.NaN : Math.round(v * 1e4) / 1e4);
  const row = {
    seed,
    validation: p.length,
    patients: new Set(split.validation.map((i) => items[i]!.group)).size,
    positives,
    accuracy: r4(all.accuracy),
    recall: r4(all.recall),
    specificity: r4(all.specificity),
    roc_auc: r4(all.rocAuc),
    recall_at_spec_097: r4(all.recallAtSpecificity?.recall ?? 0),
    positives_without_stain: isPos.filter((pos, i) => pos && !supported[i]).length,
    misses_without_stain: isPos.filter((pos, i) => pos && !supported[i] && p[i]! < 0.5).length,
    accuracy_stain_supported: r4(onSupported.accuracy),
    recall_stain_supported: r4(onSupported.recall),
    recall_at_spec_097_stain_supported: r4(onSupported.recallAtSpecificity?.recall ?? 0),
    best_epoch: result.bestEpoch,
    epochs: result.history.length,
    seconds: Math.round((Date.now() - started) / 1000),
  };
  console.log(JSON.stringify(row));
  rows.push(row);
}
const mean = (k: string) => Math.round((rows.reduce((a, r) => a + r[k]!, 0) / rows.length) * 1e4) / 1e4;
const spread = (k: string) => [Math.min(...rows.map((r) => r[k]!)), Math.max(...rows.map((r) => r[k]!))];
console.log(JSON.stringify({ bench_nih_splits: { preset: defaults.preset, backend: backend.backend, seeds: rows.length, accuracy: mean('accuracy'), recall: mean('recall'), specificity: mean('specificity'), roc_auc: mean('roc_auc'), recall_at_spec_097: mean('recall_at_spec_097'), accuracy_stain_supported: mean('accuracy_stain_supported'), recall_stain_supported: mean('recall_stain_supported'), recall_at_spec_097_stain_supported: mean('recall_at_spec_097_stain_supported'), accuracy_range: spread('accuracy'), roc_auc_range: spread('roc_auc') } }));
