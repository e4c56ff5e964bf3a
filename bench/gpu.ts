// `npm run bench:gpu`: one prepared script for a GPU host (a host without Node: scripts/gpu-host-pack.sh). Prints a table on stderr and one JSON
// line {"bench_gpu": {...}} on stdout: the WebGPU adapter; training images/s of the seed and fast presets at b32 and
// b256 on tfjs-webgpu (camflow's Conv2DBackpropFilter and Sum, and the stock ones) and of the trainer's ONNX gradient graph on
// every ONNX Runtime provider that starts; inference + CAM images/s on every ONNX
// Runtime provider that starts (uint8 NHWC input, CAM of the predicted class + its box per image); and the peer,
// PyTorch CUDA, measured in the same run. Medians. Never part of `npm test`.
//   BENCH_GPU_QUICK=1   tiny sizes, to check the script on a software adapter (lavapipe) — numbers meaningless
//   BENCH_GPU_PYTHON    the python3 with torch (default: the first of python3, /usr/bin/python3 that imports torch)
//   BENCH_GPU_PARTS     which parts to run, comma-separated (default all): tfjs, kernels, onnx-gradients, inference, pool, peer
// `pool`: P processes at once, each one ORT session on the same GPU (as P cam-workers would be), fast preset b256:
// the sum of their inference + CAM rates, each measured over the same ~8 s window after its warm-up.
import { spawn, spawnSync } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { join } from 'node:path';
import {
  OrtCamEngine,
  buildModel,
  camOptionsSchema,
  cudaProvidersInstalled,
  exportOnnx,
  initBackend,
  presets,
  probeWebGpu,
  tf,
  useWebGpuConvFilterKernel,
  useWebGpuConvInputKernel,
  useWebGpuSumKernel,
  CLASSIFIER_LAYER,
  type PresetName,
} from '@camflow/common';
import { localizeImage } from '../packages/cam-worker/src/localize-image.ts';

const here = fileURLToPath(new URL('.', import.meta.url));
const quick = process.env.BENCH_GPU_QUICK === '1';
const trainBatches = quick ? [8] : [32, 256];
const inferBatches = quick ? [16] : [256, 1024];
const steps = quick ? 3 : 10;
const parts = new Set((process.env.BENCH_GPU_PARTS ?? 'tfjs,kernels,onnx-gradients,inference,pool,peer').split(',').map((p) => p.trim()));
const say = (m: string) => process.stderr.write(`[bench:gpu] ${m}\n`);
const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)]!;
const round = (x: number) => Math.round(x * 10) / 10;

function randomBytes(n: number, seed: number): Uint8Array {
  let s = seed;
  return Uint8Array.from({ length: n }, () => ((s = (s * 1103515245 + 12345) % 2147483648) >>> 16) & 255);
}

/**
 * Training images/s of one preset at one batch size. `syncEvery` 1 waits for each step's loss on the host (what
 * the trainer does); a larger value queues that many steps before one read-back, which shows how much of a step is
 * the read-back's round trip rather than GPU work.
 */
async function trainRate(preset: PresetName, batch: number, syncEvery = 1): Promise<number> {
  const size = presets[preset].inputSize;
  const model = buildModel(preset, 2, 1);
  const optimizer = tf.train.adam(0.0005);
  const x = tf.tensor4d(Float32Array.from(randomBytes(batch * size * size * 3, 3), (v) => v / 255), [batch, size, size, 3]);
  const y = tf.oneHot(tf.tensor1d(Array.from({ length: batch }, (_, i) => i % 2), 'int32'), 2);
  const step = () => optimizer.minimize(() => tf.losses.softmaxCrossEntropy(y, model.apply(x, { training: true }) as tf.Tensor) as tf.Scalar, true)!;
  const rates: number[] = [];
  for (let r = 0; r < steps + 2; r++) {
    const t0 = performance.now();
    for (let k = 1; k < syncEvery; k++) step().dispose();
    const loss = step();
    await loss.data(); // the steps are done when the last loss is on the host
    loss.dispose();
    if (r >= 2) rates.push((batch * syncEvery) / ((performance.now() - t0) / 1000)); // two warm-up rounds compile the shaders
  }
  tf.dispose([x, y]);
  optimizer.dispose();
  model.dispose();
  return median(rates);
}

/** GPU milliseconds per kernel name of one training step of the seed net (top 8), from tf.profile. */
async function kernelProfile(batch: number): Promise<Record<string, number>> {
  const model = buildModel('seed', 2, 1);
  const optimizer = tf.train.adam(0.0005);
  const x = tf.randomUniform([batch, 128, 128, 3]);
  const y = tf.oneHot(tf.tensor1d(Array.from({ length: batch }, (_, i) => i % 2), 'int32'), 2);
  const step = () => optimizer.minimize(() => tf.losses.softmaxCrossEntropy(y, model.apply(x, { training: true }) as tf.Tensor) as tf.Scalar, true)!;
  const warm = step();
  await warm.data();
  warm.dispose();
  const info = await tf.profile(async () => {
    const loss = step();
    await loss.data();
    loss.dispose();
  });
  const byKernel = new Map<string, number>();
  for (const k of info.kernels) byKernel.set(k.name, (byKernel.get(k.name) ?? 0) + (typeof k.kernelTimeMs === 'number' ? k.kernelTimeMs : 0));
  tf.dispose([x, y]);
  optimizer.dispose();
  model.dispose();
  const top = [...byKernel].sort((a, b) => b[1] - a[1]).slice(0, 8).map(([k, v]) => [k, round(v)]);
  const total = [...byKernel.values()].reduce((a, b) => a + b, 0);
  return { ...Object.fromEntries(top), total_ms: round(total), kernels_per_step: info.kernels.length };
}

const classNames = ['Parasitized', 'Uninfected'];
const camOptions = camOptionsSchema.parse({});

/** Inference + CAM images/s, and apart: the provider's predict alone and the CAM + box post-processing alone (JS). */
const randomImages = (batch: number, size: number) => Array.from({ length: batch }, (_, i) => randomBytes(size * size * 3, 100 + i));

async function inferRate(engine: OrtCamEngine, batch: number, size: number, repeats = quick ? 2 : 5, images = randomImages(batch, size)): Promise<{ total: number; predict: number; cam: number }> {
  const once = async () => {
    const t0 = performance.now();
    const predictions = await engine.predict(images);
    const t1 = performance.now();
    // What a cam-worker does per image (default options): softmax, the predicted class's CAM at the image's size
    // (here the input's), its box and regions, its peak.
    for (const p of predictions) localizeImage(p, engine.classifierWeights, classNames, size, size, camOptions);
    return [t1 - t0, performance.now() - t1] as const;
  };
  if (repeats > 1) await once();
  const totals: number[] = [];
  const predicts: number[] = [];
  const cams: number[] = [];
  for (let r = 0; r < repeats; r++) {
    const [predictMs, camMs] = await once();
    totals.push(batch / ((predictMs + camMs) / 1000));
    predicts.push(batch / (predictMs / 1000));
    cams.push(batch / (camMs / 1000));
  }
  return { total: median(totals), predict: median(predicts), cam: median(cams) };
}

/** Milliseconds from queuing one tiny op to having its result on the host (the floor under every synced step). */
async function readbackMs(): Promise<number> {
  const one = tf.scalar(1);
  const times: number[] = [];
  for (let r = 0; r < 22; r++) {
    const t0 = performance.now();
    const t = tf.add(one, r);
    await t.data();
    t.dispose();
    if (r >= 2) times.push(performance.now() - t0);
  }
  one.dispose();
  return median(times);
}

function torchPeer(args: string[]): number | null {
  const candidates = [process.env.BENCH_GPU_PYTHON, 'python3', '/usr/bin/python3'].filter(Boolean) as string[];
  const py = candidates.find((p) => spawnSync(p, ['-c', 'import torch; assert torch.cuda.is_available()']).status === 0);
  if (!py) return null;
  const out = spawnSync(py, [join(here, 'peer', 'seed_torch.py'), ...args, '--device', 'cuda'], { encoding: 'utf8' });
  if (out.status !== 0) {
    say(`peer failed: ${out.stderr.slice(-300)}`);
    return null;
  }
  return JSON.parse(out.stdout.trim().split('\n').pop()!).images_per_s as number;
}

/** An untrained model of `preset` as ONNX Runtime serves it: the graph and the classifier's kernel. */
async function servedModel(preset: PresetName): Promise<{ onnx: Uint8Array; kernel: Float32Array }> {
  const model = buildModel(preset, 2, 2);
  const onnx = exportOnnx(model);
  const kernel = (await model.getLayer(CLASSIFIER_LAYER).getWeights()[0]!.data()) as Float32Array;
  model.dispose();
  return { onnx, kernel };
}

async function poolChild(provider: string, batch: number, seconds: number): Promise<void> {
  const { onnx, kernel } = await servedModel('fast');
  const size = presets.fast.inputSize;
  const engine = await OrtCamEngine.create(onnx, size, 2, kernel, { providers: [provider, 'cpu'], threads: 1 });
  const images = randomImages(batch, size); // made once: making them (~0.2 s a batch) is not the worker's work
  await inferRate(engine, batch, size, 2, images); // warm-up (shader compilation)
  const start = Number(process.env.BENCH_GPU_POOL_START);
  const late = Date.now() > start;
  while (Date.now() < start) await new Promise((r) => setTimeout(r, 5)); // every child starts timing together
  let done = 0;
  const t0 = performance.now();
  while (performance.now() - t0 < seconds * 1000) {
    await inferRate(engine, batch, size, 1, images); // one batch: predict, CAM and box of every image
    done += batch;
  }
  process.stdout.write(`${JSON.stringify({ device: engine.device, late, rate: done / ((performance.now() - t0) / 1000) })}\n`);
  engine.dispose();
}

/** P processes, each one ORT session on `provider`, measured together; their rates summed. */
async function poolRate(provider: string, processes: number, batch: number): Promise<{ rate: number; devices: string[]; late: number } | null> {
  const start = Date.now() + (quick ? 25_000 : 15_000); // time for every child to start, export and compile
  const children = Array.from({ length: processes }, () =>
    new Promise<string>((resolve) => {
      const child = spawn(process.execPath, [...process.execArgv, process.argv[1]!, '--pool-child', provider, String(batch)], {
        env: { ...process.env, BENCH_GPU_POOL_START: String(start) },
        stdio: ['ignore', 'pipe', 'ignore'],
      });
      let out = '';
      child.stdout.on('data', (d) => (out += d));
      child.on('close', () => resolve(out));
    }),
  );
  const lines = (await Promise.all(children)).map((o) => o.trim().split('\n').pop()!).filter((l) => l.startsWith('{'));
  if (lines.length !== processes) return null;
  const parsed = lines.map((l) => JSON.parse(l) as { device: string; rate: number; late: boolean });
  return { rate: parsed.reduce((a, p) => a + p.rate, 0), devices: [...new Set(parsed.map((p) => p.device))], late: parsed.filter((p) => p.late).length };
}

async function main() {
  const probe = await probeWebGpu();
  const results: Record<string, unknown> = { quick, adapter: probe.ok ? probe.adapter : { error: probe.reason } };
  const training: Record<string, unknown> = {};
  if (probe.ok && parts.has('tfjs')) {
    const choice = await initBackend('webgpu');
    results.tfjs_backend = `${choice.backend} (${choice.device})`;
    if (choice.backend === 'webgpu') {
      for (const preset of ['seed', 'fast'] as PresetName[]) {
        for (const b of trainBatches) {
          useWebGpuConvFilterKernel('camflow');
          const ours = await trainRate(preset, b);
          useWebGpuConvFilterKernel('stock');
          const stock = preset === 'seed' && b === trainBatches[0] ? await trainRate(preset, b) : null;
          // The earlier, tiled dW program (one output per thread, the one timed on H100/H200), same step otherwise.
          useWebGpuConvFilterKernel('camflow-tiled');
          const tiled = await trainRate(preset, b);
          useWebGpuConvFilterKernel('camflow');
          const pipelined = await trainRate(preset, b, 8);
          // The same step with tfjs's stock Sum (transpose + one workgroup per channel) for the bias gradients.
          useWebGpuSumKernel('stock');
          const stockSum = preset === 'seed' && b === trainBatches.at(-1) ? await trainRate(preset, b) : null;
          useWebGpuSumKernel('camflow');
          // …and with camflow's register-blocked input gradient instead of tfjs's (off by default).
          useWebGpuConvInputKernel('camflow');
          const blockedDx = preset === 'seed' ? await trainRate(preset, b) : null;
          useWebGpuConvInputKernel('stock');
          training[`${preset}_b${b}`] = {
            camflow: round(ours),
            camflow_tiled_dw: round(tiled),
            camflow_stock_sum: stockSum === null ? null : round(stockSum),
            camflow_dx: blockedDx === null ? null : round(blockedDx),
            stock_tfjs: stock === null ? null : round(stock),
            camflow_sync_every_8: round(pipelined),
          };
          say(`train ${preset} b${b}: ${round(ours)} images/s (tiled dW: ${round(tiled)})${stock === null ? '' : ` (stock dW kernel: ${round(stock)})`}, one read-back per 8 steps: ${round(pipelined)}`);
        }
      }
      results.readback_ms = Math.round((await readbackMs()) * 100) / 100;
      say(`read-back round trip: ${results.readback_ms} ms`);
      // Kernel by kernel (tfjs-webgpu's GPU timestamps) of one seed-net step, with each dW kernel: what dominates.
      const profile: Record<string, unknown> = {};
      for (const [which, b] of [['camflow', trainBatches[0]!], ['camflow', trainBatches.at(-1)!], ['camflow-tiled', trainBatches.at(-1)!], ['stock', trainBatches[0]!]] as const) {
        useWebGpuConvFilterKernel(which);
        profile[`${which}_b${b}`] = await kernelProfile(b);
        say(`kernel profile (${which} dW, seed b${b}): ${JSON.stringify(profile[`${which}_b${b}`])}`);
      }
      useWebGpuConvFilterKernel('camflow');
      results.kernel_ms_seed_step = profile;
    }
  }
  results.training = training;

  // `kernels`: each training kernel camflow replaces or could switch, alone, each alternative on the same tensors: the
  // filter gradient (camflow's two programs) on the seed net's two largest convs (conv2, conv3); the bias gradients'
  // Sum over N, H, W (camflow's column sum, tfjs's transpose + reduce) of conv1–conv3's outputs; the input gradient
  // (camflow's register-blocked program; tfjs's naive Conv2DBackpropInput and its matmul program,
  // `WEBGPU_USE_NAIVE_CONV2D_TRANSPOSE`; dX as a forward Conv2D) of conv2 and conv3.
  // The median of 5 after 2 warm-up calls (the first compiles the shader). Runs on lavapipe in minutes (quick: b2).
  if (probe.ok && parts.has('kernels')) {
    const choice = await initBackend('webgpu');
    const ms: Record<string, number> = {};
    const b = quick ? 2 : 256;
    const time = async (key: string, run: () => tf.Tensor) => {
      const times: number[] = [];
      for (let r = 0; r < 7; r++) {
        const t0 = performance.now();
        const g = run();
        await g.data();
        g.dispose();
        if (r >= 2) times.push(performance.now() - t0);
      }
      ms[key] = round(median(times));
    };
    const convs = [['conv2', [b, 124, 124, 16], [5, 5, 16, 32]], ['conv3', [b, 60, 60, 32], [5, 5, 32, 32]]] as const;
    for (const [name, xShape, filter] of choice.backend === 'webgpu' ? convs : []) {
      const x = tf.randomUniform([...xShape]) as tf.Tensor4D;
      const dy = tf.randomUniform([b, xShape[1] - 4, xShape[2] - 4, filter[3]]) as tf.Tensor4D;
      const w = tf.randomUniform([...filter]) as tf.Tensor4D;
      for (const which of ['camflow', 'camflow-tiled'] as const) {
        useWebGpuConvFilterKernel(which);
        await time(`dw_${name}_b${b}_${which}`, () => tf.engine().runKernel('Conv2DBackpropFilter', { x, dy }, { strides: 1, pad: 'valid', dataFormat: 'NHWC', dilations: 1, filterShape: [...filter] }) as tf.Tensor);
      }
      useWebGpuConvInputKernel('camflow');
      await time(`dx_${name}_b${b}_camflow`, () => tf.conv2dTranspose(dy, w, [...xShape], 1, 'valid'));
      useWebGpuConvInputKernel('stock');
      for (const naive of [true, false]) {
        tf.env().set('WEBGPU_USE_NAIVE_CONV2D_TRANSPOSE', naive);
        await time(`dx_${name}_b${b}_${naive ? 'naive' : 'matmul'}`, () => tf.conv2dTranspose(dy, w, [...xShape], 1, 'valid'));
      }
      tf.env().set('WEBGPU_USE_NAIVE_CONV2D_TRANSPOSE', true);
      // The same dX as a forward Conv2D (tfjs's matmul conv program) of dy, padded by 4, with the filter flipped and
      // its channels swapped: a candidate kernel, timed here before it is built.
      const flipped = tf.transpose(tf.reverse(w, [0, 1]), [0, 1, 3, 2]) as tf.Tensor4D;
      await time(`dx_${name}_b${b}_as_conv2d`, () => tf.conv2d(dy, flipped, 1, [[0, 0], [4, 4], [4, 4], [0, 0]]));
      tf.dispose([x, dy, w, flipped]);
    }
    useWebGpuConvFilterKernel('camflow');
    for (const [name, shape] of choice.backend === 'webgpu' ? ([['conv1', [b, 124, 124, 16]], ['conv2', [b, 120, 120, 32]], ['conv3', [b, 56, 56, 32]]] as const) : []) {
      const dy = tf.randomUniform([...shape]);
      for (const which of ['camflow', 'stock'] as const) {
        useWebGpuSumKernel(which);
        await time(`bias_sum_${name}_b${b}_${which}`, () => tf.sum(dy, [0, 1, 2]));
      }
      dy.dispose();
    }
    useWebGpuSumKernel('camflow');
    results.kernel_ms = ms;
    say(`training kernels alone (ms): ${JSON.stringify(ms)}`);
  }

  // The trainer's CPU path, the model's forward + backward pass as one ONNX graph (`exportGradientGraph`), on each
  // ONNX Runtime provider that starts: a candidate GPU training path beside tfjs-webgpu (gradients only, no Adam).
  const { OrtGradients } = await import('../packages/trainer/src/ort-gradients.ts');
  const onnxTraining: Record<string, unknown> = {};
  const gradientProviders: ('cuda' | 'webgpu' | 'cpu')[] = [...(cudaProvidersInstalled() ? (['cuda'] as const) : []), ...(probe.ok ? (['webgpu'] as const) : []), 'cpu'];
  for (const provider of parts.has('onnx-gradients') ? gradientProviders : []) {
    for (const preset of ['seed', 'fast'] as PresetName[]) {
      const size = presets[preset].inputSize;
      const model = buildModel(preset, 2, 1);
      const vars = model.trainableWeights.map((w) => w.read() as tf.Variable);
      let engine: Awaited<ReturnType<typeof OrtGradients.start>> | undefined;
      try {
        engine = await OrtGradients.start(model, 0, undefined, provider);
        for (const b of trainBatches) {
          const x = Float32Array.from(randomBytes(b * size * size * 3, 5), (v) => v / 255);
          const labels = Int32Array.from({ length: b }, (_, i) => i % 2);
          const rates: number[] = [];
          for (let r = 0; r < steps + 2; r++) {
            const t0 = performance.now();
            const { grads } = await engine.gradients(model, vars, [{ x, size, labels }], 2);
            tf.dispose(Object.values(grads));
            if (r >= 2) rates.push(b / ((performance.now() - t0) / 1000));
          }
          onnxTraining[`${provider}_${preset}_b${b}`] = round(median(rates));
          say(`ONNX Runtime gradients on ${provider}, ${preset} b${b}: ${round(median(rates))} images/s`);
        }
      } catch (error) {
        onnxTraining[`${provider}_${preset}`] = { error: String(error).slice(0, 300) };
      } finally {
        await engine?.close();
        model.dispose();
      }
    }
  }
  results.training_onnx_gradients = onnxTraining;

  const inference: Record<string, unknown> = {};
  for (const preset of parts.has('inference') ? (['fast', 'seed'] as PresetName[]) : []) {
    const size = presets[preset].inputSize;
    const { onnx, kernel } = await servedModel(preset);
    for (const provider of [...(cudaProvidersInstalled() ? ['tensorrt', 'cuda'] : []), 'webgpu', 'cpu']) {
      let engine: OrtCamEngine;
      try {
        engine = await OrtCamEngine.create(onnx, size, 2, kernel, { providers: [provider, ...(provider === 'cpu' ? [] : ['cpu'])] });
      } catch (error) {
        inference[`${preset}_${provider}`] = { error: (error as Error).message.slice(0, 200) };
        continue;
      }
      if (engine.device !== `onnxruntime/${provider}`) continue;
      for (const b of inferBatches) {
        const r = await inferRate(engine, b, size).catch((error: Error) => {
          say(`${preset} ${provider} b${b}: ${error.message}`);
          return null;
        });
        inference[`${preset}_${provider}_b${b}`] = r === null ? null : round(r.total);
        inference[`${preset}_${provider}_b${b}_predict_only`] = r === null ? null : round(r.predict);
        inference[`${preset}_${provider}_b${b}_cam_only`] = r === null ? null : round(r.cam);
        if (r !== null) say(`infer+CAM ${preset} ${provider} b${b}: ${round(r.total)} images/s (predict alone ${round(r.predict)}, CAM + box alone ${round(r.cam)})`);
      }
      engine.dispose();
    }
  }
  results.inference = inference;

  const pool: Record<string, unknown> = {};
  for (const provider of parts.has('pool') ? [...(probe.ok ? ['webgpu'] : []), 'cpu'] : []) {
    for (const processes of quick ? [2] : provider === 'cpu' ? [14] : [8, 14]) {
      const r = await poolRate(provider, processes, quick ? 16 : 256);
      pool[`fast_${provider}_x${processes}`] = r === null ? null : { images_per_s: round(r.rate), started_late: r.late };
      say(`pool: ${processes} processes on ${provider}, fast b${quick ? 16 : 256}: ${r === null ? 'failed' : `${round(r.rate)} images/s (${r.devices.join(', ')}; ${r.late} started late)`}`);
    }
  }
  results.inference_pool = pool;

  const peer: Record<string, number | null> = {};
  for (const b of parts.has('peer') ? trainBatches : []) peer[`seed_train_b${b}`] = torchPeer(['train', '--batch', String(b), '--repeats', String(steps)]);
  for (const b of parts.has('peer') ? inferBatches : []) peer[`seed_infer_cam_b${b}`] = torchPeer(['infer', '--batch', String(b), '--repeats', '5']);
  results.pytorch_cuda = Object.values(peer).some((v) => v !== null) ? peer : 'not measured: no python3 with torch and CUDA here';
  const seedTrain = (training[`seed_b${trainBatches[0]}`] as { camflow: number } | undefined)?.camflow;
  const peerTrain = peer[`seed_train_b${trainBatches[0]}`];
  results.train_ratio_vs_torch_cuda = seedTrain && peerTrain ? round((seedTrain / peerTrain) * 1000) / 1000 : null;
  process.stdout.write(`${JSON.stringify({ bench_gpu: results })}\n`);
  process.exit(0);
}

const childAt = process.argv.indexOf('--pool-child');
if (childAt >= 0) await poolChild(process.argv[childAt + 1]!, Number(process.argv[childAt + 2]), quick ? 2 : 8);
else await main();
