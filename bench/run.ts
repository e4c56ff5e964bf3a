// `npm run bench`: camflow against the seed's PyTorch code (bench/peer/seed_torch.py), measured in one run on the
// same machine. Medians over repeats; prints a table and one JSON line {"bench": {...}}. Never part of `npm test`.
import { spawnSync } from 'node:child_process';
import { mkdtemp, readdir, writeFile } from 'node:fs/promises';
import { tmpdir, cpus } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import {
  OrtCamEngine,
  TfjsCamEngine,
  buildInt8Graph,
  buildModel,
  promote,
  camForClass,
  exportOnnx,
  initBackend,
  localize,
  macsPerImage,
  minMaxNormalise,
  preprocess,
  softmax,
  tf,
  upsampleBilinear,
  writeSyntheticDataset,
  type CamEngine,
  type BackendPreference,
  isCellResult,
} from '@camflow/common';
import { readFile } from 'node:fs/promises';
import { submitBatch } from '@camflow/ingest';
import { readResults, waitForBatch } from '../packages/cli/src/wait.ts';
import { publishModel } from '@camflow/trainer';
import { startCluster } from '../test/helpers/cluster.ts';
import { GradientPool, shardRanges } from '../packages/trainer/src/parallel.ts';
import { OrtGradients } from '../packages/trainer/src/ort-gradients.ts';

const here = fileURLToPath(new URL('.', import.meta.url));
const THREADS = Number(process.env.BENCH_THREADS ?? Math.min(2, cpus().length));
const REPEATS = Number(process.env.BENCH_REPEATS ?? 10);
const E2E_IMAGES = Number(process.env.BENCH_E2E_IMAGES ?? 2000);
const say = (m: string) => process.stderr.write(`[bench] ${m}\n`);
const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)]!;

/** Debian's interpreter holds python3-torch; the python3 first on PATH may be another one. */
function python(): string | undefined {
  for (const p of ['/usr/bin/python3', 'python3']) if (spawnSync(p, ['-c', 'import torch, cv2'], { encoding: 'utf8' }).status === 0) return p;
  return undefined;
}

function peer(py: string | undefined, args: string[]): Record<string, unknown> | undefined {
  if (!py) return undefined;
  const out = spawnSync(py, [join(here, 'peer', 'seed_torch.py'), ...args], { encoding: 'utf8', maxBuffer: 64 * 1024 * 1024 });
  if (out.status !== 0) {
    say(`peer failed: ${out.stderr.slice(-500)}`);
    return undefined;
  }
  return JSON.parse(out.stdout.trim().split('\n').pop()!);
}

function randomImages(n: number, size: number): Uint8Array[] {
  let s = 1;
  const next = () => ((s = (s * 1103515245 + 12345) % 2147483648) / 2147483648);
  return Array.from({ length: n }, () => Uint8Array.from({ length: size * size * 3 }, () => Math.floor(next() * 256)));
}

/** Inference + the CAM of the predicted class at 128×128, the seed's procedure, per image. */
async function inferAndCam(engine: CamEngine, images: Uint8Array[]): Promise<void> {
  const predictions = await engine.predict(images);
  for (const p of predictions) {
    const probs = softmax(p.logits);
    const c = probs[0]! >= probs[1]! ? 0 : 1;
    const cam = camForClass(p.features, engine.classifierWeights, engine.numClasses, c);
    localize(minMaxNormalise(upsampleBilinear(cam, p.features.height, p.features.width, 128, 128)), 128, 128);
  }
}

async function rate(engine: CamEngine, images: Uint8Array[], repeats: number): Promise<number> {
  await inferAndCam(engine, images);
  const rates: number[] = [];
  for (let r = 0; r < repeats; r++) {
    const t0 = performance.now();
    await inferAndCam(engine, images);
    rates.push(images.length / ((performance.now() - t0) / 1000));
  }
  return median(rates);
}

/** GFLOP/s of a 1024×1024×1024 float32 matmul in ONNX Runtime: the best of 15 runs (a ceiling, so the max; the machine is shared). */
async function matmulGflops(threads: number): Promise<number> {
  const { onnx } = (await import('onnx-proto')).default;
  const ort = await import('onnxruntime-node');
  const n = 1024;
  const b = new Float32Array(n * n).map((_, i) => Math.sin(i));
  const graph = onnx.GraphProto.create({
    name: 'mm',
    node: [onnx.NodeProto.create({ opType: 'MatMul', input: ['a', 'b'], output: ['c'], name: 'mm' })],
    initializer: [onnx.TensorProto.create({ name: 'b', dims: [n, n], dataType: 1, rawData: new Uint8Array(b.buffer) })],
    input: [onnx.ValueInfoProto.create({ name: 'a', type: { tensorType: { elemType: 1, shape: { dim: [{ dimValue: n }, { dimValue: n }] } } } })],
    output: [onnx.ValueInfoProto.create({ name: 'c', type: { tensorType: { elemType: 1, shape: { dim: [{ dimValue: n }, { dimValue: n }] } } } })],
  });
  const bytes = onnx.ModelProto.encode(onnx.ModelProto.create({ irVersion: 8, opsetImport: [{ domain: '', version: 17 }], graph })).finish();
  const session = await ort.InferenceSession.create(bytes, { intraOpNumThreads: threads, executionProviders: ['cpu'] });
  const a = new ort.Tensor('float32', new Float32Array(n * n).fill(0.5), [n, n]);
  const rates: number[] = [];
  for (let r = 0; r < 16; r++) {
    const t0 = performance.now();
    await session.run({ a });
    if (r > 0) rates.push((2 * n ** 3) / ((performance.now() - t0) / 1000) / 1e9);
  }
  await session.release();
  return Math.max(...rates);
}

async function exportWeights(model: tf.LayersModel, dir: string): Promise<void> {
  const tensors = model.getWeights();
  let offset = 0;
  const meta = tensors.map((t) => {
    const entry = { shape: t.shape, offset };
    offset += t.size;
    return entry;
  });
  const flat = new Float32Array(offset);
  tensors.forEach((t, i) => {
    flat.set(t.dataSync() as Float32Array, meta[i]!.offset);
  });
  await writeFile(join(dir, 'weights.json'), JSON.stringify({ tensors: meta }));
  await writeFile(join(dir, 'weights.bin'), new Uint8Array(flat.buffer));
}

async function main() {
  const py = python();
  if (!py) say('python3-torch / python3-opencv not found: run `apt-get install python3-torch python3-opencv` for the peer column');
  const backend = await initBackend('auto');
  const work = await mkdtemp(join(tmpdir(), 'camflow-bench-'));
  const results: Record<string, unknown> = { threads: THREADS, backend: backend.backend, repeats: REPEATS };

  // The synthetic cells: int8 calibration, preprocessing and the end-to-end batch.
  const synth = join(work, 'cells');
  await writeSyntheticDataset(synth, { count: Math.min(E2E_IMAGES, 2000), seed: 5 });
  const files = [...(await readdir(join(synth, 'Parasitized'))).map((f) => join(synth, 'Parasitized', f)), ...(await readdir(join(synth, 'Uninfected'))).map((f) => join(synth, 'Uninfected', f))];
  await writeFile(join(work, 'files.txt'), files.join('\n'));
  const cellInputs = await Promise.all(files.slice(0, 512).map(async (f) => (await preprocess(await readFile(f), 128, undefined, { keepOriginal: false })).input));
  const packed = (xs: Uint8Array[]) => {
    const images = new Uint8Array(xs.length * 128 * 128 * 3);
    xs.forEach((x, i) => {
      images.set(x, i * x.length);
    });
    return { images, size: 128 };
  };

  // 1. Inference + CAM, seed preset, 128×128, batch 32.
  say('1/5 inference + CAM (seed preset, 128×128, batch 32)');
  const model = buildModel('seed', 2, 3);
  await exportWeights(model, work);
  const images = randomImages(32, 128);
  const tfjs = new TfjsCamEngine(model);
  const ort = await OrtCamEngine.create(exportOnnx(model), 128, 2, tfjs.classifierWeights, { threads: THREADS, providers: ['cpu'] });
  // The int8 graph as the trainer publishes it: calibrated on cells, compared with fp32 on other cells.
  const int8 = await buildInt8Graph(model, packed(cellInputs.slice(0, 256)), packed(cellInputs.slice(256)));
  const ort8 = await OrtCamEngine.create(int8.bytes, 128, 2, tfjs.classifierWeights, { threads: THREADS, providers: ['cpu'] });
  const ortRate = await rate(ort, images, REPEATS);
  const ort8Rate = await rate(ort8, images, REPEATS);
  const tfjsRate = await rate(tfjs, images, Math.max(3, Math.floor(REPEATS / 3)));
  const torchInfer = peer(py, ['infer', '--weights', work, '--batch', '32', '--threads', String(THREADS), '--repeats', String(REPEATS)]);
  const torchRate = torchInfer?.images_per_s as number | undefined;
  const { activationMax: _, ...agreement } = int8.report;
  results.inference = {
    camflow_ort: ortRate,
    camflow_ort_int8: ort8Rate,
    camflow_tfjs: tfjsRate,
    seed_pytorch: torchRate ?? null,
    ratio_ort_vs_pytorch: torchRate ? ortRate / torchRate : null,
    ratio_ort_int8_vs_pytorch: torchRate ? ort8Rate / torchRate : null,
    int8_vs_fp32_untrained_model: agreement,
  };

  // 5. Physical reference.
  const macs = macsPerImage(model);
  // The machine's matmul rate, measured with ONNX Runtime's MLAS kernels (Debian's torch.mm uses the reference
  // BLAS here: "BLAS_INFO=generic", ~4 GFLOP/s, no fair ceiling).
  const gflops = await matmulGflops(THREADS);
  const torchMatmul = peer(py, ['matmul', '--threads', String(THREADS)])?.gflops as number | undefined;
  results.reference = {
    gflop_per_image: (2 * macs) / 1e9,
    matmul_gflops: gflops,
    torch_mm_gflops: torchMatmul ?? null,
    best_images_per_s: gflops / ((2 * macs) / 1e9),
    ort_share_of_best: ortRate / (gflops / ((2 * macs) / 1e9)),
  };

  // 3. Training step, seed preset, 128×128, batch 32.
  say('3/5 training step (seed preset, batch 32)');
  // Plain Adam steps on one batch, as the peer does (no evaluation, no collapse checks in the timing).
  const trainModel = buildModel('seed', 2, 3);
  const optimizer = tf.train.adam(0.0005);
  const vars = trainModel.trainableWeights.map((w) => w.read() as tf.Variable);
  const x = tf.tidy(() => tf.tensor4d(Float32Array.from(images.flatMap((im) => Array.from(im, (v) => v / 255))), [32, 128, 128, 3]));
  const y = tf.oneHot(tf.tensor1d(Array.from({ length: 32 }, (_, i) => i % 2), 'int32'), 2);
  const steps = Math.max(3, Math.floor(REPEATS / 2));
  const stepRates: number[] = [];
  for (let i = 0; i <= steps; i++) {
    const t0 = performance.now();
    const cost = optimizer.minimize(() => tf.losses.softmaxCrossEntropy(y, trainModel.apply(x, { training: true }) as tf.Tensor) as tf.Scalar, true, vars)!;
    await cost.data();
    cost.dispose();
    if (i > 0) stepRates.push(32 / ((performance.now() - t0) / 1000));
  }
  const camflowTrain = median(stepRates);
  // The same steps, data-parallel over THREADS threads (what the trainer does on CPU backends).
  const pool = await GradientPool.start(THREADS, 'seed', 2, backend.backend as BackendPreference);
  const per = 128 * 128 * 3;
  const flat = Float32Array.from(images.flatMap((im) => Array.from(im, (v) => v / 255)));
  const labels = Int32Array.from({ length: 32 }, (_, i) => i % 2);
  const parallelRates: number[] = [];
  for (let i = 0; i <= steps; i++) {
    const t0 = performance.now();
    const shards = shardRanges(32, THREADS).map(({ start, end }) => ({ x: flat.slice(start * per, end * per), size: 128, labels: labels.slice(start, end) }));
    const { grads } = await pool.gradients(trainModel, vars, shards, 2);
    optimizer.applyGradients(grads as Record<string, tf.Variable>);
    tf.dispose(Object.values(grads));
    if (i > 0) parallelRates.push(32 / ((performance.now() - t0) / 1000));
  }
  await pool.close();
  const camflowWasmPool = median(parallelRates);
  // What the trainer does by default on CPU backends: the gradients on ONNX Runtime (every core), Adam in tfjs.
  const ortEngine = await OrtGradients.start(trainModel, THREADS);
  const ortRates: number[] = [];
  for (let i = 0; i <= steps; i++) {
    const t0 = performance.now();
    const { grads } = await ortEngine.gradients(trainModel, vars, [{ x: flat.slice(), size: 128, labels }], 2);
    optimizer.applyGradients(grads as Record<string, tf.Variable>);
    tf.dispose(Object.values(grads));
    if (i > 0) ortRates.push(32 / ((performance.now() - t0) / 1000));
  }
  await ortEngine.close();
  const camflowParallel = median(ortRates);
  x.dispose();
  y.dispose();
  trainModel.dispose();
  const torchTrain = peer(py, ['train', '--weights', work, '--batch', '32', '--threads', String(THREADS), '--repeats', String(steps)])?.images_per_s as number | undefined;
  results.training = {
    camflow_1_thread: camflowTrain,
    camflow_wasm_pool: camflowWasmPool,
    camflow: camflowParallel,
    camflow_threads: THREADS,
    camflow_backend: `${backend.backend}, gradients on onnxruntime-cpu`,
    seed_pytorch: torchTrain ?? null,
    ratio: torchTrain ? camflowParallel / torchTrain : null,
  };
  results.train_ratio_vs_torch = torchTrain ? camflowParallel / torchTrain : null;

  // 4. Ingest preprocessing on the same files.
  say('4/5 preprocessing (sharp vs the seed OpenCV loop)');
  const p0 = performance.now();
  const limit = 8;
  for (let i = 0; i < files.length; i += limit) await Promise.all(files.slice(i, i + limit).map(async (f) => preprocess(await readFile(f), 128, undefined, { keepOriginal: false })));
  const sharpRate = files.length / ((performance.now() - p0) / 1000);
  const cvRate = peer(py, ['preprocess', '--files', join(work, 'files.txt'), '--threads', String(THREADS)])?.images_per_s as number | undefined;
  results.preprocess = { camflow_sharp: sharpRate, seed_opencv: cvRate ?? null, ratio: cvRate ? sharpRate / cvRate : null };

  // 2. End to end through Redis and S3 with 1 and 2 cam-worker processes.
  say(`2/5 end-to-end localization of ${files.length} images with 1 and 2 cam-worker processes`);
  const e2e: Record<string, unknown> = {};
  const outputsByRun: string[][] = [];
  const runs = [
    { name: 'workers_1', workers: 1, precision: 'fp32' as const },
    { name: 'workers_2', workers: 2, precision: 'fp32' as const },
    { name: 'workers_2_int8', workers: 2, precision: 'int8' as const },
  ];
  for (const run of runs) {
    const c = await startCluster({ LOG_LEVEL: 'warn', CAM_THREADS: String(Math.max(1, Math.floor(THREADS / run.workers))), JOB_LOCK_MS: '60000', STALLED_INTERVAL_MS: '30000' });
    try {
      const manifest = await publishModel(c.ctx.store, model, {
        version: 'm-bench',
        preset: 'seed',
        inputSize: 128,
        classNames: ['Parasitized', 'Uninfected'],
        dataset: { name: 'bench', version: 'none', trainItems: 256, validationItems: 256, splitBy: 'item' },
        metrics: { valAccuracy: 0.5, valLoss: 0.69, epochs: 0, attempts: 1, history: [] },
        backend: 'none',
        createdAt: new Date().toISOString(),
      }, { int8: { calibration: packed(cellInputs.slice(0, 256)), evaluation: packed(cellInputs.slice(256)) } });
      await promote(c.ctx.store, manifest);
      for (let w = 0; w < run.workers; w++) c.spawnWorker('cam');
      const options = { outputs: [], precision: run.precision };
      // Steady state: a small warm-up batch loads the model in every worker before the timed batch.
      const warm = files.slice(0, 64 * run.workers).map((f, i) => ({ name: `warm-${i}.png`, read: () => readFile(f) }));
      await waitForBatch(c.ctx, (await submitBatch({ store: c.ctx.store, flow: c.ctx.flow, redis: c.ctx.redis, prefix: 'camflow', source: warm, modelVersion: 'm-bench', chunkSize: 32, options })).batchId, 10 * 60_000);
      // Ingest (hash, store the original and the model input, enqueue) is measured apart; the workers are idle meanwhile.
      const i0 = performance.now();
      const info = await submitBatch({ store: c.ctx.store, flow: c.ctx.flow, redis: c.ctx.redis, prefix: 'camflow', source: synth, modelVersion: 'm-bench', chunkSize: 128, options });
      const s0 = performance.now();
      await waitForBatch(c.ctx, info.batchId, 30 * 60_000);
      const seconds = (performance.now() - s0) / 1000;
      const res = await readResults(c.ctx.store, info.batchId);
      const jobs = (await c.ctx.queues.cam.getCompleted(0, 10_000)).filter((j) => j.data.batchId === info.batchId);
      const sum = { total: 0, decodeWait: 0, infer: 0, post: 0, storeTail: 0 };
      for (const j of jobs) for (const k of Object.keys(sum) as (keyof typeof sum)[]) sum[k] += (j.returnvalue as { ms: typeof sum }).ms[k];
      e2e[run.name] = {
        images_per_s: res.length / seconds,
        seconds,
        ingest_images_per_s: res.length / ((s0 - i0) / 1000),
        chunks: jobs.length,
        // Where the workers' chunk time went: waiting on S3 GETs and decodes, inference, CAM post-processing, final writes.
        chunk_time_share: Object.fromEntries(Object.entries(sum).filter(([k]) => k !== 'total').map(([k, v]) => [k, sum.total ? v / sum.total : null])),
      };
      if (run.precision === 'fp32') outputsByRun.push(res.map((r) => (isCellResult(r) ? `${r.name} ${r.predicted.label} ${JSON.stringify(r.cams[0]!.box)}` : `${r.name} failed`)).sort());
    } finally {
      await c.close();
    }
  }
  e2e.identical_results = JSON.stringify(outputsByRun[0]) === JSON.stringify(outputsByRun[1]);
  const two = (e2e.workers_2 as { images_per_s: number }).images_per_s;
  const two8 = (e2e.workers_2_int8 as { images_per_s: number }).images_per_s;
  e2e.share_of_pure_inference = two / ortRate;
  e2e.int8_share_of_pure_int8_inference = two8 / ort8Rate;
  results.end_to_end = e2e;

  const fmt = (x: unknown) => (typeof x === 'number' ? (x >= 100 ? x.toFixed(0) : x.toFixed(2)) : String(x));
  const inf = results.inference as Record<string, unknown>;
  const tr = results.training as Record<string, unknown>;
  const pp = results.preprocess as Record<string, unknown>;
  const ref = results.reference as Record<string, unknown>;
  const rows = [
    ['inference + CAM, images/s (seed, 128², batch 32)', `ORT ${fmt(inf.camflow_ort)} · tfjs ${fmt(inf.camflow_tfjs)}`, fmt(inf.seed_pytorch), fmt(inf.ratio_ort_vs_pytorch)],
    ['inference + CAM, int8 graph, images/s', `ORT int8 ${fmt(inf.camflow_ort_int8)}`, fmt(inf.seed_pytorch), fmt(inf.ratio_ort_int8_vs_pytorch)],
    ['training step, images/s (seed, batch 32)', `${fmt(tr.camflow)} (gradients on ONNX Runtime, ${THREADS} threads; tfjs ${backend.backend} pool ${fmt(tr.camflow_wasm_pool)}, 1 thread ${fmt(tr.camflow_1_thread)})`, fmt(tr.seed_pytorch), fmt(tr.ratio)],
    ['preprocessing, images/s', `sharp ${fmt(pp.camflow_sharp)}`, `OpenCV ${fmt(pp.seed_opencv)}`, fmt(pp.ratio)],
    [`end to end, ${files.length} images, 1 worker, images/s`, fmt((e2e.workers_1 as { images_per_s: number }).images_per_s), '', ''],
    [`end to end, ${files.length} images, 2 workers, images/s`, fmt(two), '', `${fmt(e2e.share_of_pure_inference)} of pure inference`],
    [`end to end, ${files.length} images, 2 workers, int8, images/s`, fmt(two8), '', `${fmt(e2e.int8_share_of_pure_int8_inference)} of pure int8 inference`],
    ['ingest (hash, store original + model input, enqueue), images/s', fmt((e2e.workers_2 as { ingest_images_per_s: number }).ingest_images_per_s), '', ''],
    ['model GFLOP/image · matmul GFLOP/s · best images/s', `${fmt(ref.gflop_per_image)} · ${fmt(ref.matmul_gflops)} · ${fmt(ref.best_images_per_s)}`, '', `ORT at ${fmt(ref.ort_share_of_best)} of best`],
  ];
  process.stdout.write(`\n| measure (threads=${THREADS}) | camflow | seed PyTorch | ratio |\n| --- | --- | --- | --- |\n${rows.map((r) => `| ${r.join(' | ')} |`).join('\n')}\n\n`);
  process.stdout.write(`${JSON.stringify({ bench: results })}\n`);
  tfjs.dispose();
  ort.dispose();
  ort8.dispose();
}

main().then(
  () => process.exit(0),
  (error) => {
    process.stderr.write(`bench failed: ${(error as Error).stack}\n`);
    process.exit(1);
  },
);
