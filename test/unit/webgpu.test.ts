// WebGPU code paths on a real adapter: a GPU where there is one, Mesa's lavapipe (software Vulkan) in CI. Where no
// adapter can be had, each test is skipped with the probe's one-line reason, never silently passed.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import {
  CLASSIFIER_LAYER,
  OrtCamEngine,
  buildModel,
  camForClass,
  chooseExecutionProviders,
  exportOnnx,
  initBackend,
  isSoftwareAdapter,
  leadingAxesView,
  minMaxNormalise,
  parseExecutionProviders,
  planColumnSum,
  planConvInput,
  planFilterGrad,
  probeWebGpu,
  registerWasmTrainingKernels,
  tf,
  useWebGpuConvFilterKernel,
  useWebGpuConvInputKernel,
  useWebGpuSumKernel,
} from '@camflow/common';

const probe = await probeWebGpu();
const noAdapter = probe.ok ? false : `no WebGPU adapter here: ${probe.reason}`;
if (probe.ok) process.stderr.write(`[webgpu.test] adapter: ${probe.adapter.description}${probe.adapter.software ? ' (software)' : ''}\n`);

const maxRel = (a: ArrayLike<number>, b: ArrayLike<number>) => {
  let scale = 1e-6;
  for (let i = 0; i < a.length; i++) scale = Math.max(scale, Math.abs(a[i]!));
  let m = 0;
  for (let i = 0; i < a.length; i++) m = Math.max(m, Math.abs(a[i]! - b[i]!));
  return m / scale;
};

/** `n` seeded floats in [-1, 1) (the same LCG as `randomImages`). */
function randomFloats(n: number, seed: number): Float32Array {
  let s = seed;
  return Float32Array.from({ length: n }, () => ((s = (s * 1103515245 + 12345) % 2147483648) / 2147483648) * 2 - 1);
}

function randomImages(n: number, size: number, seed: number): Uint8Array[] {
  let s = seed;
  const next = () => ((s = (s * 1103515245 + 12345) % 2147483648) / 2147483648);
  return Array.from({ length: n }, () => Uint8Array.from({ length: size * size * 3 }, () => Math.floor(next() * 256)));
}

test('software adapters are recognised by their description (auto choices skip them)', () => {
  assert.equal(isSoftwareAdapter('llvmpipe: Mesa 25.0.7-2~bpo12+1 (LLVM 15.0.6) 0.0.1'), true);
  assert.equal(isSoftwareAdapter('SwiftShader Device (Subzero)'), true);
  assert.equal(isSoftwareAdapter('NVIDIA H200', 'nvidia'), false);
});

test('CAM_EXECUTION_PROVIDERS is parsed strictly and CPU always closes a pinned list', async () => {
  assert.deepEqual(parseExecutionProviders(' WebGPU , cpu'), ['webgpu', 'cpu']);
  assert.throws(() => parseExecutionProviders('gpu'), (e: Error) => /CAM_EXECUTION_PROVIDERS/.test(e.message) && /tensorrt, cuda, webgpu, cpu/.test(e.message) && /"gpu"/.test(e.message));
  assert.deepEqual((await chooseExecutionProviders('webgpu')).providers, ['webgpu', 'cpu']);
  const auto = await chooseExecutionProviders();
  assert.equal(auto.providers.at(-1), 'cpu');
  // On a machine without an NVIDIA device the ladder says why CUDA was left out.
  if (!auto.providers.includes('cuda')) assert.ok(auto.skipped.some((s) => s.startsWith('tensorrt, cuda:')), auto.skipped.join('; '));
});

test('the filter gradient splits its r terms into chunks that cover them exactly, with thousands of workgroups when r is large', () => {
  for (const [m, n, r] of [[75, 16, 32 * 124 * 124], [400, 32, 32 * 120 * 120], [800, 2, 3 * 18 * 18], [27, 16, 5], [75, 16, 5184]] as const) {
    const p = planFilterGrad(m, n, r);
    const chunk = p.chunkTiles * 16;
    assert.ok(p.splits * chunk >= r && (p.splits - 1) * chunk < r, `chunks cover r exactly once: ${JSON.stringify(p)}`);
    assert.ok(p.chunkTiles >= 1 && p.splits >= 1);
  }
  const conv1 = planFilterGrad(75, 16, 32 * 124 * 124); // the seed's conv1 at b32
  assert.ok(conv1.splits * Math.ceil(75 / 16) >= 2000, `conv1 gets ${conv1.splits * 5} workgroups`);
  assert.equal(planFilterGrad(27, 16, 5).splits, 1, 'a tiny r is one chunk');
  assert.equal(planFilterGrad(75, 16, 5184).splits, 21, 'no chunk shorter than 16 tiles of 16');
  // The register-blocked kernel's 64 × 32 tiles: fewer tiles, so more chunks of r for the same workgroup count.
  const blocked = planFilterGrad(400, 32, 32 * 120 * 120, 64, 32);
  assert.ok(blocked.splits > planFilterGrad(400, 32, 32 * 120 * 120).splits && blocked.splits * 7 >= 2000, JSON.stringify(blocked));
});

test('a sum over leading axes is read as column sums of a rows × cols matrix, split into chunks that cover the rows exactly', () => {
  assert.deepEqual(leadingAxesView([32, 124, 124, 16], [0, 1, 2]), { lead: 3, rows: 32 * 124 * 124, cols: 16 });
  assert.deepEqual(leadingAxesView([4, 6, 5], [1, 0]), { lead: 2, rows: 24, cols: 5 });
  assert.deepEqual(leadingAxesView([5, 9], [-2]), { lead: 1, rows: 5, cols: 9 });
  assert.equal(leadingAxesView([4, 6, 5], [1, 2]), null, 'inner axes: the stock kernel');
  assert.equal(leadingAxesView([4, 6, 5], [0, 2]), null, 'a gap: the stock kernel');
  assert.equal(leadingAxesView([4, 6, 5], [0, 1, 2]), null, 'every axis: the stock kernel');
  assert.equal(leadingAxesView([0, 6, 5], [0]), null, 'empty: the stock kernel');
  for (const [rows, cols] of [[256 * 124 * 124, 16], [32 * 18 * 18, 2], [7, 70], [1000, 1], [5, 9], [256, 2]] as const) {
    const p = planColumnSum(rows, cols);
    assert.ok(p.splits * p.chunkRows >= rows && (p.splits - 1) * p.chunkRows < rows, `chunks cover the rows exactly once: ${JSON.stringify(p)}`);
    assert.ok(p.colsPerGroup >= Math.min(cols, 64) && p.colsPerGroup <= 64 && p.colsPerGroup * p.rowPhases === 256, JSON.stringify(p));
  }
  const conv1 = planColumnSum(256 * 124 * 124, 16); // the seed's first conv's bias gradient at b256
  assert.ok(conv1.splits >= 2000, `${conv1.splits} workgroups (stock: 16)`);
  assert.equal(planColumnSum(7, 70).splits, 1, 'a few rows are one chunk');
});

test('the webgpu backend sums over leading axes (bias gradients) with camflow\'s column sum, equal to the cpu backend', { skip: noAdapter }, async () => {
  const choice = await initBackend('webgpu');
  assert.equal(choice.backend, 'webgpu', `ladder fell to ${choice.backend}: ${choice.skipped.join('; ')}`);
  useWebGpuSumKernel('camflow');
  // Leading axes (camflow's kernel): NHWC bias gradients incl. many chunks and the 2-channel head, more than one
  // 64-column tile, keepDims, axes out of order; then reductions the stock kernel keeps (inner axes, every axis).
  const cases: { shape: number[]; axis: number | number[]; keepDims: boolean; ours: boolean }[] = [
    { shape: [4, 40, 40, 16], axis: [0, 1, 2], keepDims: false, ours: true },
    { shape: [3, 18, 18, 2], axis: [2, 1, 0], keepDims: false, ours: true },
    { shape: [3, 7, 5, 70], axis: [0, 1, 2], keepDims: true, ours: true },
    { shape: [5, 9], axis: 0, keepDims: false, ours: true },
    { shape: [1000, 1], axis: -2, keepDims: false, ours: true },
    { shape: [4, 6, 5], axis: [1, 2], keepDims: false, ours: false },
    { shape: [4, 6, 5], axis: [0, 1, 2], keepDims: false, ours: false },
    // More 64-column tiles than one dispatch dimension holds (65,535): folded into a second one. (The stock kernel
    // cannot dispatch this sum at all.)
    { shape: [2, 64 * 65_535 + 1], axis: 0, keepDims: false, ours: true },
  ];
  const columnPrograms = () => Object.keys((tf.backend() as unknown as { pipelineCache: object }).pipelineCache).filter((k) => k.startsWith('camflowColumnSum')).length;
  for (const c of cases) {
    const values = randomFloats(c.shape.reduce((a, b) => a * b), 11);
    const sum = async (backend: string) => {
      await tf.setBackend(backend);
      const x = tf.tensor(values, c.shape);
      const before = backend === 'webgpu' ? columnPrograms() : 0;
      const s = tf.sum(x, c.axis, c.keepDims);
      const out = { shape: s.shape, data: (await s.data()) as Float32Array, compiled: backend === 'webgpu' ? columnPrograms() - before : 0 };
      tf.dispose([x, s]);
      return out;
    };
    const cpu = await sum('cpu');
    const gpu = await sum('webgpu');
    assert.deepEqual(gpu.shape, cpu.shape, JSON.stringify(c));
    assert.ok(maxRel(cpu.data, gpu.data) < 1e-5, `sum differs by ${maxRel(cpu.data, gpu.data)} (${JSON.stringify(c)})`);
    assert.equal(gpu.compiled, c.ours ? 1 : 0, `camflow's column sum ${c.ours ? 'ran' : 'did not run'} for ${JSON.stringify(c)}`);
  }
});

for (const kernel of ['camflow', 'camflow-tiled'] as const)
test(`the webgpu backend (TF_BACKEND=webgpu) computes conv filter gradients equal to the cpu backend (${kernel} dW program)`, { skip: noAdapter }, async () => {
  const choice = await initBackend('webgpu');
  assert.equal(choice.backend, 'webgpu', `ladder fell to ${choice.backend}: ${choice.skipped.join('; ')}`);
  assert.equal(choice.device, probe.ok ? probe.adapter.description : '');
  useWebGpuConvFilterKernel(kernel);
  // The seed net's 5×5 valid convs, a strided same-padded one, and a 3×3 same one (the fast preset's).
  const cases: { x: [number, number, number, number]; f: [number, number, number, number]; stride: number; pad: 'valid' | 'same' }[] = [
    { x: [2, 20, 20, 3], f: [5, 5, 3, 4], stride: 1, pad: 'valid' },
    { x: [3, 17, 15, 4], f: [3, 3, 4, 5], stride: 2, pad: 'same' },
    { x: [2, 16, 16, 6], f: [3, 3, 6, 8], stride: 1, pad: 'same' },
    // Many chunks of r (21 partial sums), filter elements not a multiple of the 16×16 tile.
    { x: [4, 40, 40, 3], f: [5, 5, 3, 16], stride: 1, pad: 'valid' },
    // The seed's 2-channel head: a 16-wide tile with 14 idle columns.
    { x: [3, 22, 22, 32], f: [5, 5, 32, 2], stride: 1, pad: 'valid' },
    // More than one 64 × 32 block each way (m = 144, n = 40), with partial blocks.
    { x: [2, 12, 12, 16], f: [3, 3, 16, 40], stride: 1, pad: 'same' },
  ];
  for (const c of cases) {
    const xs = randomFloats(c.x.reduce((a, b) => a * b), 7);
    const fs = randomFloats(c.f.reduce((a, b) => a * b), 8);
    // Each backend gets its own tensors (moving data off webgpu would need a synchronous read, which Node lacks).
    const grad = async (backend: string) => {
      await tf.setBackend(backend);
      const [x, f] = [tf.tensor4d(xs, c.x), tf.tensor4d(fs, c.f)];
      const g = tf.grads((xx: tf.Tensor, ff: tf.Tensor) => tf.sum(tf.square(tf.conv2d(xx as tf.Tensor4D, ff as tf.Tensor4D, c.stride, c.pad))));
      const out = await Promise.all(g([x, f]).map((t) => t.data() as Promise<Float32Array>));
      tf.dispose([x, f]);
      return out;
    };
    const [dxCpu, dwCpu] = await grad('cpu');
    const [dxGpu, dwGpu] = await grad('webgpu');
    assert.ok(maxRel(dwCpu!, dwGpu!) < 1e-4, `dW differs by ${maxRel(dwCpu!, dwGpu!)} (${JSON.stringify(c)})`);
    assert.ok(maxRel(dxCpu!, dxGpu!) < 1e-4, `dx differs by ${maxRel(dxCpu!, dxGpu!)} (${JSON.stringify(c)})`);
  }
  useWebGpuConvFilterKernel('camflow');
});

test('the input gradient is tiled 128 × 16 for narrow inputs, 64 × 32 otherwise, and folds tiles of rows past 65,535 into z', () => {
  const g = { batch: 2, h: 124, w: 124, ci: 16, oh: 120, ow: 120, co: 32, kh: 5, kw: 5, sh: 1, sw: 1, top: 0, left: 0 };
  const narrow = planConvInput(g);
  assert.deepEqual([narrow.rows, narrow.cols, narrow.m, narrow.k], [8, 1, 2 * 124 * 124, 5 * 5 * 32]);
  assert.deepEqual(narrow.dispatch, [1, Math.ceil((2 * 124 * 124) / 128), 1]);
  const wide = planConvInput({ ...g, ci: 40 });
  assert.deepEqual([wide.rows, wide.cols], [4, 2]);
  assert.equal(wide.dispatch[0], 2);
  // 65,536 tiles of 128 rows: one more than a dispatch dimension holds.
  const folded = planConvInput({ ...g, batch: 1, h: 65_536 * 128, w: 1, oh: 65_536 * 128, ow: 1, kh: 1, kw: 1 });
  assert.deepEqual(folded.dispatch, [1, 65_535, 2]);
});

test("the webgpu backend computes conv input gradients (dX) with camflow's blocked program when switched on, equal to the cpu backend", { skip: noAdapter, timeout: 300_000 }, async () => {
  const choice = await initBackend('webgpu');
  assert.equal(choice.backend, 'webgpu', `ladder fell to ${choice.backend}: ${choice.skipped.join('; ')}`);
  useWebGpuConvInputKernel('camflow');
  // The seed net's 5×5 valid convs (16 and 32 input channels), its 2-channel head, the fast preset's 3×3 same
  // convs, strided ones (same and valid: terms off the stride grid), channels not a multiple of the tile, rows
  // past one dispatch dimension (65,536 tiles of 128: folded into z).
  const cases: { x: [number, number, number, number]; f: [number, number, number, number]; stride: number; pad: 'valid' | 'same' }[] = [
    { x: [2, 20, 20, 16], f: [5, 5, 16, 32], stride: 1, pad: 'valid' },
    { x: [3, 14, 14, 32], f: [5, 5, 32, 32], stride: 1, pad: 'valid' },
    { x: [3, 22, 22, 32], f: [5, 5, 32, 2], stride: 1, pad: 'valid' },
    { x: [2, 16, 16, 16], f: [3, 3, 16, 32], stride: 1, pad: 'same' },
    { x: [3, 17, 15, 4], f: [3, 3, 4, 5], stride: 2, pad: 'same' },
    { x: [2, 19, 18, 6], f: [4, 3, 6, 3], stride: 3, pad: 'valid' },
    { x: [2, 12, 12, 40], f: [3, 3, 40, 20], stride: 1, pad: 'same' },
    { x: [1, 2897, 2897, 1], f: [1, 1, 1, 1], stride: 1, pad: 'valid' },
  ];
  const dxPrograms = () => Object.keys((tf.backend() as unknown as { pipelineCache: object }).pipelineCache).filter((k) => k.startsWith('camflowConvDX')).length;
  for (const c of cases) {
    const info = tf.backend_util.computeConv2DInfo(c.x, c.f, c.stride, 1, c.pad);
    const dyShape = [c.x[0], info.outHeight, info.outWidth, c.f[3]] as [number, number, number, number];
    const [dys, fs] = [randomFloats(dyShape.reduce((a, b) => a * b), 5), randomFloats(c.f.reduce((a, b) => a * b), 6)];
    const dx = async (backend: string) => {
      await tf.setBackend(backend);
      const [dy, f] = [tf.tensor4d(dys, dyShape), tf.tensor4d(fs, c.f)];
      const before = backend === 'webgpu' ? dxPrograms() : 0;
      const out = tf.conv2dTranspose(dy, f, c.x, c.stride, c.pad);
      const result = { shape: out.shape, data: (await out.data()) as Float32Array, compiled: backend === 'webgpu' ? dxPrograms() - before : 0 };
      tf.dispose([dy, f, out]);
      return result;
    };
    const cpu = await dx('cpu');
    const gpu = await dx('webgpu');
    assert.deepEqual(gpu.shape, c.x);
    assert.equal(gpu.compiled, 1, `camflow's dX program ran for ${JSON.stringify(c)}`);
    assert.ok(maxRel(cpu.data, gpu.data) < 1e-5, `dX differs by ${maxRel(cpu.data, gpu.data)} (${JSON.stringify(c)})`);
  }
  // Switched off again (the default): the stock program runs.
  useWebGpuConvInputKernel('stock');
  const before = dxPrograms();
  const dy = tf.randomUniform([1, 9, 9, 8]) as tf.Tensor4D;
  const f = tf.randomUniform([3, 3, 4, 8]) as tf.Tensor4D;
  const stock = tf.conv2dTranspose(dy, f, [1, 11, 11, 4], 1, 'valid');
  await stock.data();
  tf.dispose([dy, f, stock]);
  assert.equal(dxPrograms(), before, 'the stock dX ran');
});

test('a few training steps of the fast preset on webgpu follow the wasm backend (the CPU trainer) step for step', { skip: noAdapter }, async () => {
  await initBackend('webgpu');
  await import('@tensorflow/tfjs-backend-wasm');
  registerWasmTrainingKernels();
  const pixels = Float32Array.from(randomImages(8, 64, 3).flatMap((im) => Array.from(im, (v) => v / 255)));
  const losses = async (backend: string) => {
    await tf.setBackend(backend);
    const xs = tf.tensor4d(pixels, [8, 64, 64, 3]);
    const ys = tf.oneHot(tf.tensor1d([0, 1, 0, 1, 1, 0, 0, 1], 'int32'), 2);
    const model = buildModel('fast', 2, 11);
    const optimizer = tf.train.sgd(0.05);
    const out: number[] = [];
    for (let step = 0; step < 3; step++) {
      const loss = optimizer.minimize(() => tf.losses.softmaxCrossEntropy(ys, model.apply(xs, { training: true }) as tf.Tensor) as tf.Scalar, true)!;
      out.push((await loss.data())[0]!);
      loss.dispose();
    }
    tf.dispose([xs, ys]);
    model.dispose();
    optimizer.dispose();
    return out;
  };
  const cpu = await losses('wasm');
  const gpu = await losses('webgpu');
  assert.notEqual(cpu[2], cpu[0], 'the weights move');
  for (let i = 0; i < 3; i++) assert.ok(Math.abs(cpu[i]! - gpu[i]!) < 1e-3, `step ${i}: wasm ${cpu[i]} vs webgpu ${gpu[i]}`);
});

test("the trainer's fit runs on webgpu (camflow's dW and Sum, losses read back in groups) with the history of a read per step", { skip: noAdapter, timeout: 300_000 }, async () => {
  const choice = await initBackend('webgpu');
  assert.equal(choice.backend, 'webgpu', `ladder fell to ${choice.backend}: ${choice.skipped.join('; ')}`);
  const { fitWithRestarts } = await import('../../packages/trainer/src/fit.ts');
  const data = (n: number, seed: number) => ({ images: Uint8Array.from(randomImages(n, 64, seed).flatMap((im) => Array.from(im))), labels: Int32Array.from({ length: n }, (_, i) => i % 2), size: 64 });
  const [train, validation] = [data(20, 21), data(8, 22)];
  const params = { preset: 'fast' as const, numClasses: 2, epochs: 2, batchSize: 8, learningRate: 0.002, seed: 6, maxRestarts: 0, patience: 99, augment: true, classWeights: false };
  const grouped = await fitWithRestarts(params, train, validation);
  const each = await fitWithRestarts({ ...params, lossReadEvery: 1 }, train, validation);
  grouped.model.dispose();
  each.model.dispose();
  assert.equal(grouped.history.length, 2);
  assert.ok(grouped.history.every((h) => Number.isFinite(h.loss) && h.loss > 0 && Number.isFinite(h.valLoss)), JSON.stringify(grouped.history));
  assert.deepEqual(grouped.history.map((h) => h.loss), each.history.map((h) => h.loss));
});

test('ONNX Runtime on its WebGPU provider gives the CPU provider’s logits and CAMs (≤ 1e-4 after normalisation)', { skip: noAdapter, timeout: 300_000 }, async () => {
  await initBackend('cpu').catch(() => undefined);
  const model = buildModel('fast', 2, 5);
  model.setWeights(model.getWeights().map((w, i) => (w.shape.length === 1 ? w.add(0.01 * (i + 1)) : w)));
  const onnx = exportOnnx(model);
  const kernel = model.getLayer(CLASSIFIER_LAYER).getWeights()[0]!.dataSync() as Float32Array;
  const gpu = await OrtCamEngine.create(onnx, 64, 2, kernel, { providers: ['webgpu', 'cpu'] });
  const cpu = await OrtCamEngine.create(onnx, 64, 2, kernel, { providers: ['cpu'] });
  assert.equal(gpu.device, 'onnxruntime/webgpu');
  assert.equal(gpu.preferredBatch, 256, 'GPU providers take hundreds of images per run');
  assert.equal(cpu.preferredBatch, 32);
  const images = randomImages(5, 64, 21);
  const [a, b] = [await cpu.predict(images), await gpu.predict(images)];
  for (let i = 0; i < images.length; i++) {
    assert.ok(maxRel(a[i]!.logits, b[i]!.logits) <= 1e-4, `logits ${a[i]!.logits} vs ${b[i]!.logits}`);
    for (let c = 0; c < 2; c++) {
      const na = minMaxNormalise(camForClass(a[i]!.features, kernel, 2, c));
      const nb = minMaxNormalise(camForClass(b[i]!.features, kernel, 2, c));
      assert.ok(maxRel(na, nb) <= 1e-4, `normalised CAM of class ${c} differs by ${maxRel(na, nb)}`);
    }
  }
  gpu.dispose();
  cpu.dispose();
  model.dispose();
});

test("the training gradient graph on ONNX Runtime's WebGPU provider gives the CPU provider's gradients (≤ 1e-4)", { skip: noAdapter, timeout: 300_000 }, async () => {
  const { OrtGradients } = await import('../../packages/trainer/src/ort-gradients.ts');
  await initBackend('cpu').catch(() => undefined);
  const model = buildModel('fast', 2, 9);
  const vars = model.trainableWeights.map((w) => w.read() as tf.Variable);
  const n = 4;
  const x = Float32Array.from(randomImages(n, 64, 33).flatMap((im) => Array.from(im, (v) => v / 255)));
  const shard = () => ({ x: x.slice(), size: 64, labels: Int32Array.from([0, 1, 1, 0]), sampleWeights: Float32Array.from([1, 1, 2, 0.5]) });
  const cpu = await OrtGradients.start(model, 1, undefined, 'cpu');
  const gpu = await OrtGradients.start(model, 1, undefined, 'webgpu');
  const [a, b] = [await cpu.gradients(model, vars, [shard()], 2), await gpu.gradients(model, vars, [shard()], 2)];
  assert.ok(Math.abs(a.lossSum - b.lossSum) <= 1e-4 * Math.abs(a.lossSum), `loss ${a.lossSum} vs ${b.lossSum}`);
  for (const v of vars) assert.ok(maxRel(a.grads[v.name]!.dataSync(), b.grads[v.name]!.dataSync()) <= 1e-4, `${v.name}: ${maxRel(a.grads[v.name]!.dataSync(), b.grads[v.name]!.dataSync())}`);
  tf.dispose([...Object.values(a.grads), ...Object.values(b.grads)]);
  await cpu.close();
  await gpu.close();
  model.dispose();
});
