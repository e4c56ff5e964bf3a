import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtemp } from 'node:fs/promises';
import { Writable } from 'node:stream';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { ObjectStore, buildModel, createLogger, getModelManifest, getProduction, promote, defaultLearningRate, initBackend, keys, preprocess, startS3, tf, trainJobSchema, writeSyntheticDataset, type LocalS3 } from '@camflow/common';
import { addDataset, noModelError } from '@camflow/ingest';
import { augmentInto, classWeightsFor, promoteIfBetter, publishModel, drawAugmentation, evaluate, fitWithRestarts, gather, majorityClass, resolveSplitBy, runTraining, splitIndices, trainingInputs } from '@camflow/trainer';

let s3: LocalS3;
let store: ObjectStore;
let dir: string;

before(async () => {
  await initBackend('wasm');
  s3 = await startS3();
  store = new ObjectStore({ bucket: s3.bucket, endpoint: s3.endpoint, credentials: s3.credentials });
  await store.ensureBucket();
  dir = await mkdtemp(join(tmpdir(), 'camflow-training-'));
});

after(async () => {
  store?.destroy();
  await s3?.stop();
});

test("one set of training defaults: the preset's lr (fast 0.002, seed the seed's 0.0005), up to 30 epochs with early stopping, augmentation and class weights", () => {
  const d = trainJobSchema.parse({ dataset: 'cells' });
  assert.deepEqual(
    { lr: d.learningRate ?? defaultLearningRate[d.preset], epochs: d.epochs, patience: d.earlyStopPatience, augment: d.augment, classWeights: d.classWeights, validationFraction: d.validationFraction },
    { lr: 0.002, epochs: 30, patience: 5, augment: true, classWeights: true, validationFraction: 0.15 },
  );
  assert.equal(d.preset, 'fast');
  assert.equal(defaultLearningRate.seed, 0.0005);
  assert.equal(trainJobSchema.parse({ dataset: 'cells', learningRate: 0.01 }).learningRate, 0.01, 'an explicit rate stands');
});

test('training sees the pixels serving sees: a preset smaller than the snapshot is made from the originals by the workers\' preprocess', async () => {
  await writeSyntheticDataset(join(dir, 'cells'), { count: 24, seed: 61 });
  const { manifest } = await addDataset({ store, name: 'px', folder: join(dir, 'cells'), size: 128 });
  const inputs = await trainingInputs(store, manifest, 64);
  const per = 64 * 64 * 3;
  for (const [i, item] of manifest.items.entries()) {
    const original = await store.get(keys.original(item.sha256, item.ext));
    // Both serving paths: the one that draws overlays (decode, then resize) and the archive path (one pipeline).
    for (const keepOriginal of [true, false]) {
      const { input } = await preprocess(original, 64, undefined, { keepOriginal });
      assert.deepEqual(inputs.subarray(i * per, (i + 1) * per), input, `${item.name} (keepOriginal ${keepOriginal})`);
    }
  }
  // The snapshot's own size comes from its shards, which were made by the same function.
  const same = await trainingInputs(store, manifest, 128);
  const first = manifest.items[0]!;
  assert.deepEqual(same.subarray(0, 128 * 128 * 3), (await preprocess(await store.get(keys.original(first.sha256, first.ext)), 128)).input);
});

test('augmentation: the eight dihedral transforms of the image, multiplicative colour gains, black stays black', () => {
  const size = 3;
  const src = new Uint8Array(size * size * 3);
  for (let i = 0; i < size * size; i++) src.set([i * 20, 255 - i * 20, i * 7], i * 3);
  src.set([0, 0, 0], 8 * 3); // a black corner pixel (the crops' background)
  const seen = new Set<string>();
  for (let t = 0; t < 8; t++) {
    const out = new Float32Array(size * size * 3);
    augmentInto(src, 0, size, { transform: t, scale: 1, shift: [0, 0], gains: [1, 1, 1] }, out, 0);
    seen.add(Array.from(out).join(','));
  }
  assert.equal(seen.size, 8, 'eight distinct transforms');
  // Rotation by 90°: output (x, y) reads source (y, size-1-x); output (0, 0) is source (0, 2) = pixel 6.
  const rot = new Float32Array(size * size * 3);
  augmentInto(src, 0, size, { transform: 1, scale: 1, shift: [0, 0], gains: [1, 1, 1] }, rot, 0);
  assert.deepEqual(Array.from(rot.subarray(0, 3)).map((v) => Math.round(v * 255)), [120, 135, 42]);
  const lit = new Float32Array(size * size * 3);
  augmentInto(src, 0, size, { transform: 0, scale: 1, shift: [0, 0], gains: [1.2, 0.8, 1.1] }, lit, 0);
  assert.deepEqual(Array.from(lit.subarray(24, 27)), [0, 0, 0], 'black background stays black');
  assert.ok(Math.abs(lit[3 * 3 + 1]! - Math.min(1, ((255 - 60) / 255) * 0.8)) < 1e-6);
  const rng = { s: 1, next() { this.s = (this.s * 16807) % 2147483647; return this.s / 2147483647; } };
  for (let i = 0; i < 200; i++) {
    const a = drawAugmentation(rng);
    assert.ok(a.transform >= 0 && a.transform < 8 && a.gains.every((g) => g > 0.75 && g < 1.35), JSON.stringify(a));
    assert.ok(a.scale >= 0.9 && a.scale <= 1.1 && a.shift.every((d) => Math.abs(d) <= 0.05), JSON.stringify(a));
  }
});

test('augmentation: a small zoom and shift, bilinear, black coming in from outside the crop', () => {
  // A 16² crop: a bright 4×4 square at (6…9, 6…9) on black.
  const size = 16;
  const src = new Uint8Array(size * size * 3);
  for (let y = 6; y < 10; y++) for (let x = 6; x < 10; x++) src.fill(200, (y * size + x) * 3, (y * size + x) * 3 + 3);
  const render = (aug: { scale: number; shift: [number, number] }) => {
    const out = new Float32Array(size * size * 3);
    augmentInto(src, 0, size, { transform: 0, gains: [1, 1, 1], ...aug }, out, 0);
    return out;
  };
  const mass = (img: Float32Array) => {
    let m = 0, mx = 0, my = 0;
    for (let i = 0; i < size * size; i++) { const v = img[i * 3]!; m += v; mx += v * (i % size); my += v * Math.floor(i / size); }
    return { m, cx: mx / m, cy: my / m };
  };
  const plain = mass(render({ scale: 1, shift: [0, 0] }));
  assert.ok(Math.abs(plain.m - (16 * 200) / 255) < 1e-4, 'identity keeps the image');
  // Shifted by 1/16 of the side: the square moves one pixel right and down, nothing else changes.
  const moved = mass(render({ scale: 1, shift: [1 / 16, 1 / 16] }));
  assert.ok(Math.abs(moved.cx - plain.cx - 1) < 1e-4 && Math.abs(moved.cy - plain.cy - 1) < 1e-4, JSON.stringify({ plain, moved }));
  // Zoomed by 1.1 about the centre: the square grows (≈ 1.21 × its area) and stays centred where it was.
  const zoomed = mass(render({ scale: 1.1, shift: [0, 0] }));
  assert.ok(zoomed.m > plain.m * 1.1 && zoomed.m < plain.m * 1.35, JSON.stringify({ plain, zoomed }));
  // The corners come from outside the crop when shrunk: black, never wrapped or clamped from the edge.
  const edge = new Uint8Array(size * size * 3).fill(255);
  const out = new Float32Array(size * size * 3);
  augmentInto(edge, 0, size, { transform: 0, scale: 0.9, shift: [0, 0], gains: [1, 1, 1] }, out, 0);
  // Corner (0, 0) reads source (−0.83, −0.83): 83 % of its bilinear weight lies outside the crop.
  assert.ok(out[0]! < 0.05, `the corner of a shrunk crop is black (${out[0]})`);
  assert.equal(out[(8 * size + 8) * 3], 1, 'its centre is the crop');
});

test('class weights balance unbalanced classes and are off for balanced ones', () => {
  assert.equal(classWeightsFor([0, 1, 0, 1], 2), undefined);
  assert.deepEqual(classWeightsFor([0, 0, 0, 1], 2), [4 / 6, 2]);
});

test('the published weights are the best epoch\'s (lowest validation loss), and training stops when it stops improving', async () => {
  await writeSyntheticDataset(join(dir, 'fit'), { count: 120, seed: 62 });
  const { manifest } = await addDataset({ store, name: 'fit', folder: join(dir, 'fit'), size: 64 });
  const images = await trainingInputs(store, manifest, 64);
  const labels = manifest.items.map((i) => i.label);
  const split = splitIndices(manifest.items, 0.25, 1, 'item');
  const train = gather(images, labels, split.train, 64);
  const validation = gather(images, labels, split.validation, 64);
  const result = await fitWithRestarts({ preset: 'fast', numClasses: 2, epochs: 8, batchSize: 16, learningRate: 0.004, seed: 5, maxRestarts: 0, patience: 20, earlyStopPatience: 2, augment: true, classWeights: true }, train, validation);
  const losses = result.history.map((h) => h.valLoss);
  const best = result.history[losses.indexOf(Math.min(...losses))]!;
  assert.equal(result.bestEpoch, best.epoch);
  const now = await evaluate(result.model, validation, 2);
  assert.ok(Math.abs(now.valLoss - best.valLoss) < 1e-4, `model holds epoch ${best.epoch} (val loss ${best.valLoss}), evaluates to ${now.valLoss}`);
  if (result.history.length < 8) assert.ok(result.history.length - result.bestEpoch <= 2, 'stopped within 2 epochs of the best');
  result.model.dispose();
  assert.ok(tf.memory().numTensors < 200, `no leaked tensors: ${tf.memory().numTensors}`);
});

test('the promotion gate runs production and candidate on the same validation images', async () => {
  const log = createLogger({ level: 'silent' });
  const ctx = (jobId: string) => ({ store, log, backend: 'wasm', jobId, jobTimestamp: Date.now() });
  const base = { dataset: 'fit', preset: 'fast' as const, batchSize: 16, maxRestarts: 0, collapsePatience: 20 };
  const noBetter = (o: { warnings?: string[] }) => (o.warnings ?? []).some((w) => /is no better than always answering/.test(w));
  const first = await runTraining({ ...base, epochs: 2, seed: 1 }, ctx('gate-1'));
  assert.ok(!first.skipped && first.comparison === undefined, 'the first model has nothing to be compared with');
  // The first model is promoted unless it is no better than the majority class (120 synthetic images and 2 epochs
  // are often not enough: then it is promoted by hand here, as a user may with `camflow models promote`).
  assert.equal(first.promoted, !noBetter(first), first.promotion);
  if (!first.promoted) await promote(store, first.manifest);
  // The manifest records which images it was validated on (what `camflow eval <its dataset>` scores): the split's.
  const { manifest: fit } = await addDataset({ store, name: 'fit', folder: join(dir, 'fit'), size: 64 });
  const resolved = resolveSplitBy(fit.items, 'auto');
  assert.deepEqual(first.manifest.dataset.validation, splitIndices(fit.items, 0.15, 1, resolved).validation);
  assert.equal(first.manifest.dataset.validation!.length, first.manifest.dataset.validationItems);
  // Same dataset, seed and fraction: the same validation images, so production scores what it recorded.
  const second = await runTraining({ ...base, epochs: 1, seed: 1, learningRate: 0.0001 }, ctx('gate-2'));
  assert.ok(!second.skipped && second.comparison);
  assert.equal(second.comparison.production, first.version);
  assert.deepEqual([second.dataset, second.datasetVersion], ['fit', fit.version], 'what `latest` was, named');
  assert.equal(second.comparison.images, second.manifest.dataset.validationItems);
  assert.equal(second.comparison.productionAccuracy, first.valAccuracy);
  const notLearnt = noBetter(second);
  assert.equal(second.promoted, !notLearnt && second.comparison.candidateAccuracy >= second.comparison.productionAccuracy);
  assert.match(second.promotion, notLearnt ? /is no better than always answering .*camflow models promote/ : /on the same \d+ validation images/);
  // One epoch at a tiny rate: a model no better than always answering the majority class is published with a
  // warning that says so (in the outcome and its manifest), and only then.
  const majority = majorityClass(second.manifest.dataset.validation!.map((i) => fit.items[i]!.label), 2);
  assert.equal(second.valAccuracy <= majority.share + 0.01, (second.warnings ?? []).some((w) => /is no better than always answering (Parasitized|Uninfected)/.test(w)), `${second.valAccuracy} vs ${majority.share}: ${second.warnings}`);
  assert.deepEqual(second.manifest.warnings, second.warnings);
  // Another split: production is measured again, on the candidate's images — those it did not train on. A larger
  // validation share holds the same patients and more, which trained production: left out, and said.
  const third = await runTraining({ ...base, epochs: 1, seed: 1, validationFraction: 0.4 }, ctx('gate-3'));
  assert.ok(!third.skipped && third.comparison);
  const heldBefore = new Set(first.manifest.dataset.validation);
  const learnt = third.manifest.dataset.validation!.filter((i) => !heldBefore.has(i));
  assert.ok(learnt.length > 0, 'the larger share holds images production trained on');
  assert.deepEqual([third.comparison.images, third.comparison.trainedProduction], [third.manifest.dataset.validationItems - learnt.length, learnt.length]);
  assert.equal(third.comparison.productionAccuracy, (await getModelManifest(store, third.comparison.production)).metrics.valAccuracy, 'production scored on its own validation images, as it recorded');
  assert.equal(third.promoted, !noBetter(third) && third.comparison.candidateAccuracy >= third.comparison.productionAccuracy);
  if (!noBetter(third)) assert.match(third.promotion, new RegExp(`on the same ${third.comparison.images} validation images; ${learnt.length} more left out: production trained on them: `));
  // A production model promoted by hand (a rollback) stays: a scheduled run publishes beside it; a requested one may replace it.
  const { promoteByHand } = await import('@camflow/common');
  const rolledBack = await promoteByHand(store, first.manifest);
  assert.equal(rolledBack.channel.by, 'hand');
  const nightly = await promoteIfBetter(store, third.manifest, log, undefined, undefined, true);
  assert.equal(nightly.promoted, false);
  assert.match(nightly.reason, new RegExp(`^production ${first.version} was promoted by hand \\(.*\\): a scheduled run does not replace it \\(\`camflow models promote ${third.version}\` to serve this one\\)$`));
  assert.equal((await getProduction(store))!.version, first.version);
  // Rolled back to a model of an older snapshot: the schedule finds the latest changed, but once a model of it exists
  // (published beside the rollback), it does not train it again every night.
  await promote(store, { ...first.manifest, dataset: { ...first.manifest.dataset, version: 'd000000000000' } }, 'hand');
  // The models trained by request above do not count: the first scheduled run trains (and publishes beside the
  // rollback), the next one skips.
  const nightly1 = await runTraining({ ...base, epochs: 2, seed: 1, skipIfUnchanged: true }, { ...ctx('gate-nightly-1'), scheduled: true });
  assert.ok(!nightly1.skipped && !nightly1.promoted && nightly1.manifest.origin === 'schedule', JSON.stringify(!nightly1.skipped && nightly1.promotion));
  // 120 synthetic cells and 2 epochs rarely learn: a scheduled model that does not tell the classes apart does not
  // count either; one that does (published here as the schedule would) ends the retraining of this snapshot.
  const scheduledModel = buildModel('fast', 2, 9);
  const learntNightly = await publishModel(store, scheduledModel, { ...nightly1.manifest, version: 'm-nightly-learnt', notLearnt: undefined, origin: 'schedule', createdAt: new Date(Date.now() + 1000).toISOString() });
  scheduledModel.dispose();
  const again = await runTraining({ ...base, epochs: 2, seed: 1, skipIfUnchanged: true }, { ...ctx('gate-nightly-2'), scheduled: true });
  assert.ok(again.skipped, JSON.stringify(again));
  assert.equal(again.reason, `dataset fit@${fit.version} already trained (model ${nightly1.manifest.notLearnt ? learntNightly.version : nightly1.version}), and production ${first.version} was promoted by hand: nothing new to train (\`camflow models promote ${nightly1.manifest.notLearnt ? learntNightly.version : nightly1.version}\` serves that one)`);
  await promoteByHand(store, first.manifest);
  // A candidate whose every validation image trained production has nothing to be compared on: not promoted, said.
  const current = (await getProduction(store))!;
  const none = await promoteIfBetter(store, third.manifest, log, { production: current.version, images: 0, trainedProduction: 12, candidateAccuracy: 0, productionAccuracy: 0 });
  assert.equal(none.promoted, false);
  assert.match(none.reason, new RegExp(`^production ${current.version} trained on all 12 of its validation images: no image is new to both models`));
});

test('the learning rate halves when the validation loss stops improving, and training stops after the patience', async () => {
  const { manifest } = await addDataset({ store, name: 'fit', folder: join(dir, 'fit'), size: 64 });
  const images = await trainingInputs(store, manifest, 64);
  const labels = manifest.items.map((i) => i.label);
  const split = splitIndices(manifest.items, 0.25, 1, 'item');
  const lines: { msg: string; learningRate?: number }[] = [];
  const log = createLogger({ level: 'info', destination: new Writable({ write: (chunk, _e, cb) => (lines.push(JSON.parse(String(chunk))), cb()) }) });
  const train = gather(images, labels, split.train, 64);
  const validation = gather(images, labels, split.validation, 64);
  const params = { preset: 'fast' as const, numClasses: 2, batchSize: 32, seed: 5, maxRestarts: 0, patience: 20, augment: false };
  // A model that has learnt (training loss below chance: a run still at chance is not on a plateau), then a rate of
  // 0: the validation loss never moves, so every epoch after the first is a plateau.
  const learnt = await fitWithRestarts({ ...params, epochs: 10, batchSize: 8, learningRate: 0.004 }, train, validation);
  assert.ok(learnt.history.at(-1)!.loss < 0.97 * Math.log(2), `learnt: training loss ${learnt.history.at(-1)!.loss}`);
  const weights = learnt.model.getWeights();
  const result = await fitWithRestarts({ ...params, epochs: 10, learningRate: 0, earlyStopPatience: 3, lrPlateauPatience: 1 }, train, validation, { log, resume: { attempt: 0, epoch: 0, history: [], weights } });
  learnt.model.dispose();
  assert.equal(result.history.length, 4, 'stopped 3 epochs after the best (epoch 1)');
  assert.equal(result.bestEpoch, 1);
  assert.equal(lines.filter((l) => /learning rate halved/.test(l.msg)).length, 3, 'halved after epochs 2, 3 and 4; stopped after 4');
  result.model.dispose();
  // A fresh model at rate 0 has not started to learn (training loss at chance): no halving, no early stop; the run
  // goes on to its last epoch (the collapse check, not the early stop, decides what becomes of it).
  lines.length = 0;
  const fresh = await fitWithRestarts({ ...params, epochs: 5, learningRate: 0, earlyStopPatience: 2, lrPlateauPatience: 1 }, train, validation, { log });
  assert.ok(fresh.history.every((h) => h.loss >= 0.97 * Math.log(2)), `at chance: ${fresh.history.map((h) => h.loss.toFixed(3))}`);
  assert.equal(fresh.history.length, 5);
  assert.equal(lines.filter((l) => /learning rate halved|early stop/.test(l.msg)).length, 0);
  fresh.model.dispose();
});

test('a model no better than always answering one class is published but never promoted, not even over a worse production; submit without a production model names it', async () => {
  const production = await getProduction(store);
  assert.ok(production, 'the gate test above promoted one');
  const candidate = { ...(await getModelManifest(store, production.version)), version: 'm-not-learnt' };
  candidate.metrics = { ...candidate.metrics, valAccuracy: 0.99 };
  const why = 'validation accuracy 0.6452 is no better than always answering Uninfected (0.6452 of the 31 validation images)';
  const gate = await promoteIfBetter(store, candidate, undefined, undefined, why);
  assert.deepEqual([gate.promoted, gate.reason], [false, `${why} (\`camflow models promote m-not-learnt\` to serve it anyway)`]);
  assert.equal((await getProduction(store))?.version, production.version, 'production unchanged');
  // With no production model at all, the refusal to submit names the newest model and what kept it out.
  // (Its first warning is another one: the reason named is the one that kept it out.)
  const split = 'the group split put 40 of 200 images (20 %) in validation, not the 15 % asked (--val-fraction)';
  await store.putJson(keys.modelFile('m-not-learnt', 'manifest.json'), { ...candidate, warnings: [split, why], notLearnt: why, createdAt: new Date().toISOString() });
  const e = await noModelError(store);
  assert.equal(e.message, `no production model: train one first (camflow train, POST /v1/train) or name a version (--model, or the model field over HTTP); m-not-learnt was published but not promoted (${why}): \`camflow models promote m-not-learnt\` (POST /v1/models/m-not-learnt/promote) serves it anyway`);
});
