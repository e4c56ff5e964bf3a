import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtemp, readFile, writeFile, copyFile, readdir, mkdir } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import {
  InvalidParameterError,
  buildModel,
  cellForeground,
  deserializeModel,
  packInputs,
  unpackInputs,
  encodePng,
  getProduction,
  keys,
  listModels,
  getTrainingJob,
  nightlySchedulerId,
  preprocess,
  startRedis,
  startS3,
  tf,
  toInputTensor,
  writeSyntheticDataset,
  type LocalRedis,
  type LocalS3,
  type BatchItem,
  type CamJob,
  type ModelFiles,
  isCellResult,
  type OkResult,
} from '@camflow/common';
import { KeyConflictError, addDataset, submitBatch } from '@camflow/ingest';
import { CheckpointStore, jobKey, paramsHash } from '@camflow/trainer';
import { enqueueTraining, scheduleRetraining } from '@camflow/common';
import { ModelCache, processChunk, type ImageResult } from '@camflow/cam-worker';
import { createContext, type Context } from '../../packages/cli/src/context.ts';
import { startWorkers } from '../../packages/cli/src/workers.ts';
import { readResults, waitForBatch, waitForJob } from '../../packages/cli/src/wait.ts';
import { publishAsIs } from '../helpers/cluster.ts';

let redis: LocalRedis;
let s3: LocalS3;
let ctx: Context;
let workers: { close(): Promise<void> };
let dir: string;

before(async () => {
  redis = await startRedis();
  s3 = await startS3();
  ctx = await createContext(
    { REDIS_URL: redis.url, S3_ENDPOINT: s3.endpoint, S3_BUCKET: s3.bucket, AWS_ACCESS_KEY_ID: 'S3RVER', AWS_SECRET_ACCESS_KEY: 'S3RVER', LOG_LEVEL: 'warn', TF_BACKEND: 'wasm' },
    'test',
  );
  await ctx.store.ensureBucket();
  workers = await startWorkers('all', ctx.config, ctx.store, ctx.log);
  dir = await mkdtemp(join(tmpdir(), 'camflow-e2e-'));
});

after(async () => {
  await workers?.close();
  await ctx?.close();
  await s3?.stop();
  await redis?.stop();
});

let modelVersion = '';
/** The batch that drew heatmaps and overlays (its cam-workers decoded the originals). */
let drawnBatch = '';

test('a labelled folder becomes an immutable, content-versioned dataset snapshot', async () => {
  await writeSyntheticDataset(join(dir, 'train'), { count: 160, seed: 5 });
  const first = await addDataset({ store: ctx.store, name: 'cells', folder: join(dir, 'train'), size: 64 });
  assert.equal(first.created, true);
  assert.equal(first.manifest.items.length, 160);
  assert.deepEqual(first.manifest.classNames, ['Parasitized', 'Uninfected']);
  // boxes.json sits at the root, outside any class folder: reported, not taken.
  assert.deepEqual(first.manifest.rejected.map((r) => r.name), ['boxes.json']);
  assert.ok(await ctx.store.exists(keys.datasetShard('cells', first.manifest.version, 0)));
  const again = await addDataset({ store: ctx.store, name: 'cells', folder: join(dir, 'train'), size: 64 });
  assert.equal(again.created, false);
  assert.equal(again.manifest.version, first.manifest.version);
});

test('a training job publishes a version (manifest last), promotes the first model and announces it', async () => {
  // Enough epochs to beat the majority class on these 160 cells (a model that does not is never promoted).
  const job = await enqueueTraining(ctx.queues.train, { dataset: 'cells', preset: 'fast', epochs: 4, learningRate: 0.002, maxRestarts: 0, seed: 1 });
  const outcome = (await waitForJob(ctx.queues.train, job.id!, undefined, 300_000)) as { version: string; promoted: boolean; promotion: string; valAccuracy: number; epochs: number };
  assert.equal(outcome.promoted, true, outcome.promotion);
  modelVersion = outcome.version;
  const production = await getProduction(ctx.store);
  assert.equal(production?.version, modelVersion);
  for (const f of ['model.json', 'weights.bin', 'model.onnx', 'model.int8.onnx', 'manifest.json'] as const) assert.ok(await ctx.store.exists(keys.modelFile(modelVersion, f)), f);
  const models = await listModels(ctx.store);
  assert.equal(models.length, 1);
  assert.equal(models[0]!.metrics.history.length, outcome.epochs);
  // The int8 graph was calibrated on the training images and compared with fp32 on the validation images.
  const int8 = models[0]!.int8!;
  assert.equal(int8.calibrationImages, models[0]!.dataset.trainItems);
  assert.equal(int8.evaluatedImages, models[0]!.dataset.validationItems);
  assert.ok(int8.classAgreement >= 0.9, `int8 agrees with fp32 on ${int8.classAgreement} of the validation images`);
  // The screening operating point, chosen on the validation images for the default recall.
  const screening = models[0]!.screening!;
  assert.equal(screening.positiveClass, 'Parasitized');
  assert.equal(screening.targetRecall, 0.98);
  assert.equal(screening.validation.images, models[0]!.dataset.validationItems);
  assert.ok(screening.validation.recall >= 0.98, `recall at the operating point: ${screening.validation.recall}`);
});

test('retraining on an unchanged dataset is skipped, and the nightly job scheduler is installed', async () => {
  const job = await enqueueTraining(ctx.queues.train, { dataset: 'cells', preset: 'fast', epochs: 1, skipIfUnchanged: true });
  const outcome = (await waitForJob(ctx.queues.train, job.id!, undefined, 60_000)) as { skipped: boolean; reason: string };
  assert.equal(outcome.skipped, true);
  assert.match(outcome.reason, /unchanged/);
  await scheduleRetraining(ctx.queues.train, '0 2 * * *', 'Europe/Paris', { dataset: 'cells' });
  const scheduler = await ctx.queues.train.getJobScheduler(nightlySchedulerId);
  assert.equal(scheduler?.pattern, '0 2 * * *');
  assert.equal(scheduler?.tz, 'Europe/Paris');
  assert.ok((scheduler?.next ?? 0) > Date.now());
  assert.equal((scheduler?.template?.data as { skipIfUnchanged?: boolean } | undefined)?.skipIfUnchanged, true);
  await ctx.queues.train.removeJobScheduler(nightlySchedulerId);
});

test('a collapsed training run is never published or promoted', async () => {
  // A learning rate of 1 blows the weights up: NaN loss or dead features, every attempt.
  const job = await enqueueTraining(ctx.queues.train, { dataset: 'cells', preset: 'fast', epochs: 2, learningRate: 1, maxRestarts: 1, seed: 3 });
  await assert.rejects(waitForJob(ctx.queues.train, job.id!, undefined, 300_000), /collapsed/);
  // The restart is said where a user looks (`train show`, GET /v1/train/:id), counted from 1, with its reason.
  const status = await getTrainingJob(ctx.queues.train, job.id!);
  assert.equal(status.progress?.attempt, 1, `the second attempt, counted from 0 as stored: ${JSON.stringify(status.progress)}`);
  assert.match(status.progress?.restarts?.[0] ?? '', /^attempt 1 collapsed \(.+\); restarted with a new initialisation$/);
  assert.equal((await listModels(ctx.store)).length, 1);
  assert.equal((await getProduction(ctx.store))?.version, modelVersion);
});

test('a training checkpoint keeps the restarts said so far, so a job resumed after a crash still reports them', async () => {
  const checkpoints = new CheckpointStore(ctx.store, jobKey('restart-spec'), paramsHash({ lr: 1 }));
  const weights = [tf.tensor([1, 2, 3, 4], [2, 2]), tf.tensor([5], [1])];
  const restarts = ['attempt 1 collapsed (NaN loss); restarted with a new initialisation'];
  await checkpoints.save({ attempt: 1, epoch: 2, history: [], weights }, restarts);
  const loaded = await checkpoints.load();
  assert.deepEqual(loaded?.restarts, restarts);
  assert.equal(loaded?.attempt, 1);
  assert.deepEqual(Array.from(await loaded!.weights[0]!.data()), [1, 2, 3, 4]);
  // A checkpoint without restarts (and one written before they were kept) loads with none.
  await checkpoints.save({ attempt: 0, epoch: 1, history: [], weights });
  assert.deepEqual((await checkpoints.load())?.restarts, []);
  tf.dispose([...weights, ...loaded!.weights]);
  await checkpoints.clear();
});

test('a batch with bad files completes: every item once, good images localized, bad ones failed with a reason', async () => {
  const batchDir = join(dir, 'batch');
  await writeSyntheticDataset(join(dir, 'src'), { count: 6, seed: 9 });
  await mkdir(batchDir, { recursive: true });
  const good: string[] = [];
  for (const cls of ['Parasitized', 'Uninfected']) {
    for (const f of await readdir(join(dir, 'src', cls))) {
      await copyFile(join(dir, 'src', cls, f), join(batchDir, `${cls}-${f}`));
      good.push(`${cls}-${f}`);
    }
  }
  const png = await readFile(join(batchDir, good[0]!));
  await writeFile(join(batchDir, 'zz-duplicate.png'), png);
  await writeFile(join(batchDir, 'zz-truncated.png'), png.subarray(0, Math.floor(png.length / 2)));
  await writeFile(join(batchDir, 'zz-text.png'), 'this is not an image\n');
  await writeFile(join(batchDir, 'zz-empty.png'), Buffer.alloc(0));
  const info = await submitBatch({ store: ctx.store, flow: ctx.flow, redis: ctx.redis, prefix: 'camflow', source: batchDir, chunkSize: 3, options: { target: 'all' }, idempotencyKey: 'batch-one' });
  drawnBatch = info.batchId;
  assert.equal(info.items, good.length + 4);
  // Text, empty and truncated are refused at ingest (a cell crop is decoded there, as a worker would): never queued.
  assert.equal(info.rejected, 3);
  assert.equal(info.uniqueImages, good.length); // the duplicate is stored once, the refused files not at all
  await waitForBatch(ctx, info.batchId, 120_000);
  const results = await readResults(ctx.store, info.batchId);
  const names = results.map((r) => r.name).sort();
  assert.deepEqual(names, [...good, 'zz-duplicate.png', 'zz-empty.png', 'zz-text.png', 'zz-truncated.png'].sort(), 'every item exactly once');
  const byName = new Map(results.map((r) => [r.name, r]));
  const reason = (n: string) => (byName.get(n) as Extract<ImageResult, { status: 'failed' }>).reason;
  assert.equal(reason('zz-empty.png'), 'empty');
  assert.equal(reason('zz-text.png'), 'unsupported-format');
  assert.equal(reason('zz-truncated.png'), 'truncated', JSON.stringify(byName.get('zz-truncated.png')));
  const ok = results.filter(isCellResult);
  assert.equal(ok.length, good.length + 1);
  for (const r of ok) {
    assert.equal(r.modelVersion, modelVersion);
    // Every CAM peak is on the cell, never on the crop's black background.
    const { input } = await preprocess(await ctx.store.get(keys.original(r.sha256, 'png')), 64);
    const cell = cellForeground(input, 64, r.width, r.height)!;
    for (const cam of r.cams) assert.equal(cell[cam.peak.y * r.width + cam.peak.x], 1, `${r.name}: ${cam.class} peak ${JSON.stringify(cam.peak)} on the cell`);
    assert.equal(r.cams.length, 2);
    const box = r.cams[0]!.box!;
    assert.ok(box.x >= 0 && box.y >= 0 && box.x + box.width <= r.width && box.y + box.height <= r.height, 'box inside the original image');
    assert.ok(Math.abs(Object.values(r.probabilities).reduce((a, b) => a + b, 0) - 1) < 1e-5);
    for (const key of [r.outputs.json!, r.outputs.heatmap!, r.outputs.overlay!]) assert.ok(await ctx.store.exists(key), key);
  }
  const summary = await ctx.store.getJson<{ ok: number; failed: number; failures: Record<string, number>; screen: { positive: number; negative: number } }>(keys.resultsSummary(info.batchId));
  assert.deepEqual({ ok: summary.ok, failed: summary.failed }, { ok: good.length + 1, failed: 3 });
  // Every localized image carries the screening call at the model's operating point; the summary counts them.
  for (const r of ok) assert.ok(r.screen && r.screen.positive === r.screen.probability >= r.screen.threshold && r.screen.probability === r.probabilities.Parasitized, JSON.stringify(r.screen));
  assert.equal(summary.screen.positive + summary.screen.negative, ok.length);

  // The same idempotency key: the same batch, nothing enqueued again.
  const before = await ctx.queues.cam.getJobCounts();
  const again = await submitBatch({ store: ctx.store, flow: ctx.flow, redis: ctx.redis, prefix: 'camflow', source: batchDir, chunkSize: 3, options: { target: 'all' }, idempotencyKey: 'batch-one' });
  assert.equal(again.existing, true);
  assert.equal(again.batchId, info.batchId);
  assert.deepEqual(await ctx.queues.cam.getJobCounts(), before);
  // The same key with other options is another request: refused, naming the key and the batch that owns it.
  await assert.rejects(
    submitBatch({ store: ctx.store, flow: ctx.flow, redis: ctx.redis, prefix: 'camflow', source: batchDir, chunkSize: 3, idempotencyKey: 'batch-one' }),
    (e: Error) => e instanceof KeyConflictError && e.batchId === info.batchId && /batch-one/.test(e.message),
  );

  // The stored CAM equals an independent computation of the seed's formula on the published weights.
  const r = ok.find((x) => x.name === good[0])!;
  const files: ModelFiles = { modelJson: await ctx.store.getJson(keys.modelFile(modelVersion, 'model.json')), weights: await ctx.store.get(keys.modelFile(modelVersion, 'weights.bin')) };
  const model = await deserializeModel(files);
  const { input } = await preprocess(png, 64);
  const featureModel = tf.model({ inputs: model.inputs, outputs: model.getLayer('features').output as tf.SymbolicTensor });
  const f = featureModel.predict(toInputTensor([input], 64)) as tf.Tensor4D; // [1, h, w, k]
  const weightSoftmax = (model.getLayer('classifier').getWeights()[0]!.transpose() as tf.Tensor2D).arraySync(); // [c][k]
  const fa = f.arraySync()[0]!;
  for (const cam of r.cams) {
    const expected = fa.flatMap((row) => row.map((px) => px.reduce((acc, v, k) => acc + weightSoftmax[cam.classIndex]![k]! * v, 0)));
    const maxAbs = Math.max(...expected.map((v, i) => Math.abs(v - cam.featureCam[i]!)));
    assert.ok(maxAbs < 1e-3, `CAM of ${cam.class} differs from the seed formula by ${maxAbs}`);
  }
  model.dispose();
});

test('a batch can run the int8 graph: results say so, and match the fp32 results up to quantization', async () => {
  const batchDir = join(dir, 'batch');
  const fp32 = await submitBatch({ store: ctx.store, flow: ctx.flow, redis: ctx.redis, prefix: 'camflow', source: batchDir, chunkSize: 4, options: { outputs: [] } });
  const int8 = await submitBatch({ store: ctx.store, flow: ctx.flow, redis: ctx.redis, prefix: 'camflow', source: batchDir, chunkSize: 4, options: { outputs: [], precision: 'int8' } });
  await Promise.all([waitForBatch(ctx, fp32.batchId, 120_000), waitForBatch(ctx, int8.batchId, 120_000)]);
  const ok = async (id: string) => new Map((await readResults(ctx.store, id)).filter(isCellResult).map((r) => [r.name, r]));
  const [a, b] = [await ok(fp32.batchId), await ok(int8.batchId)];
  assert.equal(b.size, a.size);
  let differs = false;
  for (const [name, ra] of a) {
    const rb = b.get(name)!;
    assert.equal(ra.precision, 'fp32');
    assert.equal(rb.precision, 'int8');
    const [ca, cb] = [ra.cams[0]!.featureCam, rb.cams[0]!.featureCam];
    const range = Math.max(...ca) - Math.min(...ca);
    const diff = Math.max(...ca.map((v, i) => Math.abs(v - cb[i]!)));
    if (diff > 0) differs = true;
    assert.ok(diff <= 0.1 * range, `${name}: int8 CAM differs from fp32 by ${diff} (range ${range})`);
  }
  assert.ok(differs, 'the int8 graph ran (its CAMs are not bit-identical to fp32)');
});

test('an archive run gets its model inputs made at ingest, packed per chunk; its results equal those computed from the originals', async () => {
  const batchDir = join(dir, 'batch');
  const info = await submitBatch({ store: ctx.store, flow: ctx.flow, redis: ctx.redis, prefix: 'camflow', source: batchDir, chunkSize: 4, options: { outputs: ['json'], target: 'all' } });
  await waitForBatch(ctx, info.batchId, 120_000);
  const items = (await ctx.store.get(keys.batchManifest(info.batchId))).toString('utf8').trim().split('\n').map((l) => JSON.parse(l) as BatchItem | { name: string; error: string });
  const accepted = items.filter((i): i is BatchItem => 'sha256' in i);
  // One pack per chunk, holding the chunk's items in order; the truncated image has no input (its cam-worker
  // decodes the original and reports why).
  assert.equal(info.chunks, Math.ceil(accepted.length / 4));
  const packs = await Promise.all(Array.from({ length: info.chunks }, async (_, c) => unpackInputs(await ctx.store.get(keys.batchInputs(info.batchId, c)))));
  for (const [c, pack] of packs.entries()) {
    assert.equal(pack.size, 64);
    const chunkItems = accepted.slice(c * 4, (c + 1) * 4).filter((i) => i.name !== 'zz-truncated.png');
    assert.deepEqual([...pack.inputs.keys()], chunkItems.map((i) => i.sha256), `chunk ${c}`);
  }
  const byName = async (id: string) => new Map((await readResults(ctx.store, id)).map((r) => [r.name, r]));
  const [archive, drawn] = [await byName(info.batchId), await byName(drawnBatch)];
  assert.deepEqual([...archive.keys()].sort(), [...drawn.keys()].sort());
  for (const [name, a] of archive) {
    const d = drawn.get(name)!;
    assert.equal(a.status, d.status, name);
    if (!isCellResult(a) || !isCellResult(d)) {
      assert.equal((a as { reason?: string }).reason, (d as { reason?: string }).reason, name);
      continue;
    }
    assert.deepEqual([a.width, a.height, a.predicted.index], [d.width, d.height, d.predicted.index], name);
    for (const [c, cam] of a.cams.entries()) {
      assert.deepEqual(cam.box, d.cams[c]!.box, `${name}: class ${c} box`);
      assert.ok(Math.max(...cam.featureCam.map((v, i) => Math.abs(v - d.cams[c]!.featureCam[i]!))) <= 1e-5, `${name}: class ${c} CAM`);
    }
  }
  // A chunk really reads its pack: give one image a flat pink input (a black one would be refused as grey) and run a
  // chunk of it.
  const victim = accepted.find((i) => i.name === 'zz-duplicate.png')!;
  await ctx.store.put(keys.batchInputs('b-rerun', 0), packInputs(64, [{ sha256: victim.sha256, png: await encodePng(new Uint8Array(64 * 64 * 3).map((_, i) => [200, 90, 150][i % 3]!), 64, 64) }]));
  const models = new ModelCache(ctx.store, ctx.log, { kind: 'onnx', threads: 1 });
  const job: CamJob = { batchId: 'b-rerun', chunk: 0, modelVersion, items: [victim], options: { ...info.options } };
  await processChunk(job, { store: ctx.store, models, log: ctx.log, inferBatch: 8, storeParallelism: 4, maxPixels: 1e8, batchPixels: 1e7 });
  models.dispose();
  const rerun = JSON.parse((await ctx.store.get(keys.resultChunk('b-rerun', 0))).toString('utf8')) as ImageResult;
  const before = archive.get('zz-duplicate.png') as OkResult;
  assert.equal(rerun.status, 'ok');
  assert.notDeepEqual((rerun as typeof before).cams[0]!.featureCam, before.cams[0]!.featureCam, 'the pink input was used');
});

test('asking for int8 on a model published without an int8 graph is refused at submission, naming the field', async () => {
  const model = buildModel('fast', 2, 1);
  await publishAsIs(ctx.store, model, 'fast', 'm-no-int8');
  model.dispose();
  await assert.rejects(
    submitBatch({ store: ctx.store, flow: ctx.flow, redis: ctx.redis, prefix: 'camflow', source: join(dir, 'batch'), modelVersion: 'm-no-int8', options: { precision: 'int8' } }),
    (e: Error) => e instanceof InvalidParameterError && e.field === 'options.precision' && /no int8 graph/.test(e.message),
  );
});
