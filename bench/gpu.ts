// `npm run bench:gpu`: one prepared script for a GPU host (see shared/GPU.md). Prints a table on stderr and one JSON
// line {"bench_gpu": {...}} on stdout: the WebGPU adapter; training images/s of the seed and fast presets at b32 and
// b256 on tfjs-webgpu (camflow's Conv2DBackpropFilter and the stock one) and of the trainer's ONNX gradient graph on
// every ONNX Runtime provider that starts; inference + CAM images/s on every ONNX
// Runtime provider that starts (uint8 NHWC input, CAM of the predicted class + its box per image); and the peer,
// PyTorch CUDA, measured in the same run. Medians. Never part of `npm test`.
//   BENCH_GPU_QUICK=1   tiny sizes, to check the script on a software adapter (lavapipe) — numbers meaningless
//   BENCH_GPU_PYTHON    the python3 with torch (default: the first of python3, /usr/bin/python3 that imports torch)
import { spawnSync } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { join } from 'node:path';
import {
  OrtCamEngine,
  buildModel,
  cudaProvidersInstalled,
  camForClass,
  exportOnnx,
  initBackend,
  localize,
  minMaxNormalise,
  presets,
  probeWebGpu,
  softmax,
  tf,
  upsampleBilinear,
  useWebGpuConvFilterKernel,
  CLASSIFIER_LAYER,
  type PresetName,
} from '@camflow/common';

const here = fileURLToPath(new URL('.', import.meta.url));
const quick = process.env.BENCH_GPU_QUICK === '1';
const trainBatches = quick ? [8] : [32, 256];
const inferBatches = quick ? [16] : [256, 1024];
const steps = quick ? 3 : 10;
const say = (m: string) => process.stderr.write(`[bench:gpu] ${m}\n`);
const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)]!;
const round = (x: number) => Math.round(x * 10) / 10;

function randomBytes(n: number, seed: number): Uint8Array {
  let s = seed;
  return Uint8Array.from({ length: n }, () => ((s = (s * 1103515245 + 12345) % 2147483648) >>> 16) & 255);
}

async function trainRate(preset: PresetName, batch: number): Promise<number> {
  const size = presets[preset].inputSize;
  const model = buildModel(preset, 2, 1);
  const optimizer = tf.train.adam(0.0005);
  const x = tf.tensor4d(Float32Array.from(randomBytes(batch * size * size * 3, 3), (v) => v / 255), [batch, size, size, 3]);
  const y = tf.oneHot(tf.tensor1d(Array.from({ length: batch }, (_, i) => i % 2), 'int32'), 2);
  const rates: number[] = [];
  for (let r = 0; r < steps + 2; r++) {
    const t0 = performance.now();
    const loss = optimizer.minimize(() => tf.losses.softmaxCrossEntropy(y, model.apply(x, { training: true }) as tf.Tensor) as tf.Scalar, true)!;
    await loss.data(); // the step is done when its loss is on the host
    loss.dispose();
    if (r >= 2) rates.push(batch / ((performance.now() - t0) / 1000)); // two warm-up steps compile the shaders
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
  return Object.fromEntries([...byKernel].sort((a, b) => b[1] - a[1]).slice(0, 8).map(([k, v]) => [k, round(v)]));
}

async function inferRate(engine: OrtCamEngine, batch: number, size: number): Promise<number> {
  const images = Array.from({ length: batch }, (_, i) => randomBytes(size * size * 3, 100 + i));
  const once = async () => {
    for (const p of await engine.predict(images)) {
      const probs = softmax(p.logits);
      const c = probs[0]! >= probs[1]! ? 0 : 1;
      const cam = camForClass(p.features, engine.classifierWeights, engine.numClasses, c);
      localize(minMaxNormalise(upsampleBilinear(cam, p.features.height, p.features.width, size, size)), size, size);
    }
  };
  await once();
  const rates: number[] = [];
  for (let r = 0; r < (quick ? 2 : 5); r++) {
    const t0 = performance.now();
    await once();
    rates.push(batch / ((performance.now() - t0) / 1000));
  }
  return median(rates);
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

async function main() {
  const probe = await probeWebGpu();
  const results: Record<string, unknown> = { quick, adapter: probe.ok ? probe.adapter : { error: probe.reason } };
  const training: Record<string, unknown> = {};
  if (probe.ok) {
    const choice = await initBackend('webgpu');
    results.tfjs_backend = `${choice.backend} (${choice.device})`;
    if (choice.backend === 'webgpu') {
      for (const preset of ['seed', 'fast'] as PresetName[]) {
        for (const b of trainBatches) {
          useWebGpuConvFilterKernel('camflow');
          const ours = await trainRate(preset, b);
          useWebGpuConvFilterKernel('stock');
          const stock = preset === 'seed' && b === trainBatches[0] ? await trainRate(preset, b) : null;
          training[`${preset}_b${b}`] = { camflow: round(ours), stock_tfjs: stock === null ? null : round(stock) };
          say(`train ${preset} b${b}: ${round(ours)} images/s${stock === null ? '' : ` (stock dW kernel: ${round(stock)})`}`);
        }
      }
      useWebGpuConvFilterKernel('camflow');
      // Kernel by kernel (tfjs-webgpu's GPU timestamps) of one seed-net step, with each dW kernel: what dominates.
      const profile: Record<string, unknown> = {};
      for (const which of ['camflow', 'stock'] as const) {
        useWebGpuConvFilterKernel(which);
        profile[which] = await kernelProfile(trainBatches[0]!);
        say(`kernel profile (${which} dW, seed b${trainBatches[0]}): ${JSON.stringify(profile[which])}`);
      }
      useWebGpuConvFilterKernel('camflow');
      results.kernel_ms_seed_step = profile;
    }
  }
  results.training = training;

  // The trainer's CPU path, the model's forward + backward pass as one ONNX graph (`exportGradientGraph`), on each
  // ONNX Runtime provider that starts: a candidate GPU training path beside tfjs-webgpu (gradients only, no Adam).
  const { OrtGradients } = await import('../packages/trainer/src/ort-gradients.ts');
  const onnxTraining: Record<string, unknown> = {};
  const gradientProviders: ('cuda' | 'webgpu' | 'cpu')[] = [...(cudaProvidersInstalled() ? (['cuda'] as const) : []), ...(probe.ok ? (['webgpu'] as const) : []), 'cpu'];
  for (const provider of gradientProviders) {
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
  for (const preset of ['fast', 'seed'] as PresetName[]) {
    const size = presets[preset].inputSize;
    const model = buildModel(preset, 2, 2);
    const onnx = exportOnnx(model);
    const kernel = (await model.getLayer(CLASSIFIER_LAYER).getWeights()[0]!.data()) as Float32Array;
    model.dispose();
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
        const r = await inferRate(engine, b, size).catch((error: Error) => (say(`${preset} ${provider} b${b}: ${error.message}`), null));
        inference[`${preset}_${provider}_b${b}`] = r === null ? null : round(r);
        if (r !== null) say(`infer+CAM ${preset} ${provider} b${b}: ${round(r)} images/s`);
      }
      engine.dispose();
    }
  }
  results.inference = inference;

  const peer: Record<string, number | null> = {};
  for (const b of trainBatches) peer[`seed_train_b${b}`] = torchPeer(['train', '--batch', String(b), '--repeats', String(steps)]);
  for (const b of inferBatches) peer[`seed_infer_cam_b${b}`] = torchPeer(['infer', '--batch', String(b), '--repeats', '5']);
  results.pytorch_cuda = Object.values(peer).some((v) => v !== null) ? peer : 'not measured: no python3 with torch and CUDA here';
  const seedTrain = (training[`seed_b${trainBatches[0]}`] as { camflow: number } | undefined)?.camflow;
  const peerTrain = peer[`seed_train_b${trainBatches[0]}`];
  results.train_ratio_vs_torch_cuda = seedTrain && peerTrain ? round((seedTrain / peerTrain) * 1000) / 1000 : null;
  process.stdout.write(`${JSON.stringify({ bench_gpu: results })}\n`);
  process.exit(0);
}

await main();
