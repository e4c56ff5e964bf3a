import { test } from 'node:test';
import assert from 'node:assert/strict';
import {
  FEATURES_LAYER,
  OrtCamEngine,
  TfjsCamEngine,
  buildInt8Graph,
  buildModel,
  calibrateActivations,
  camForClass,
  exportOnnx,
  initBackend,
  minMaxNormalise,
  quantizeWeights,
  WEIGHT_LEVELS,
  tf,
  upsampleBilinear,
  type PresetName,
} from '@camflow/common';

/** Smooth images with a dark disc (cell-like statistics rather than white noise). */
function discImages(n: number, size: number, seed: number): Uint8Array {
  let s = seed;
  const next = () => ((s = (s * 1103515245 + 12345) % 2147483648) / 2147483648);
  const out = new Uint8Array(n * size * size * 3);
  for (let i = 0; i < n; i++) {
    const [cx, cy, r] = [next() * size, next() * size, 3 + next() * size * 0.1];
    for (let y = 0; y < size; y++)
      for (let x = 0; x < size; x++)
        for (let c = 0; c < 3; c++) {
          const v = 200 - (Math.hypot(x - cx, y - cy) < r ? 120 : 0) + (next() - 0.5) * 40 + c * 10;
          out[((i * size + y) * size + x) * 3 + c] = Math.max(0, Math.min(255, Math.round(v)));
        }
  }
  return out;
}

const split = (packed: Uint8Array, size: number) => Array.from({ length: packed.length / (size * size * 3) }, (_, i) => packed.subarray(i * size * size * 3, (i + 1) * size * size * 3));

/**
 * The int8 graph's arithmetic, simulated in float with TensorFlow.js: weights rounded per output channel, biases
 * to the int32 grid, every quantized activation rounded to its uint8 grid (zero point 0 is the ReLU).
 */
function fakeQuantized(model: tf.LayersModel, input: tf.Tensor4D, activationMax: Record<string, number>): tf.Tensor {
  return tf.tidy(() => {
    let x: tf.Tensor = input.div(255);
    // `scale`: x sits on that uint8 grid (the input bytes are exact on 1/255). `pending`: x is a calibrated float
    // ReLU output that the next quantized conv rounds to the grid of pending/255 (QuantizeLinear).
    let scale: number | undefined = 1 / 255;
    let pending: number | undefined;
    for (const layer of model.layers) {
      const cls = layer.getClassName();
      const config = layer.getConfig() as Record<string, unknown>;
      const max = activationMax[layer.name];
      const quantizable = cls === 'Conv2D' && layer.name !== FEATURES_LAYER && config.activation === 'relu' && max !== undefined && (scale !== undefined || pending !== undefined);
      if (quantizable) {
        if (scale === undefined) {
          scale = pending! / 255;
          x = x.div(scale).round().clipByValue(0, 255).mul(scale);
        }
        const [kernel, bias] = layer.getWeights() as [tf.Tensor4D, tf.Tensor1D];
        const [kh, kw, cin, cout] = kernel.shape;
        const q = quantizeWeights(tf.transpose(kernel, [3, 2, 0, 1]).dataSync() as Float32Array, cout);
        const w = tf.transpose(tf.tensor4d(Float32Array.from(q.values, (v, i) => v * q.scales[Math.floor(i / (cin * kh * kw))]!), [cout, cin, kh, kw]), [2, 3, 1, 0]) as tf.Tensor4D;
        const inScale = scale;
        const b = tf.tensor1d(Array.from(bias.dataSync(), (v, c) => Math.round(v / (inScale * q.scales[c]!)) * inScale * q.scales[c]!));
        const y = tf.conv2d(x as tf.Tensor4D, w, 1, config.padding as 'same' | 'valid').add(b);
        scale = max! / 255;
        pending = undefined;
        x = y.div(scale).round().clipByValue(0, 255).mul(scale);
      } else {
        x = layer.apply(x) as tf.Tensor;
        if (cls !== 'MaxPooling2D') {
          scale = undefined;
          pending = cls === 'Conv2D' && config.activation === 'relu' ? max : undefined;
        }
      }
      if (layer.name === FEATURES_LAYER) return x;
    }
    throw new Error('no features layer');
  });
}

test('int8 weights: symmetric per output channel, every weight within half a step of its value', () => {
  const w = Float32Array.from({ length: 2 * 8 }, (_, i) => (i < 8 ? Math.sin(i) * 0.3 : Math.cos(i) * 5));
  const { values, scales } = quantizeWeights(w, 2);
  for (const [c, part] of [w.subarray(0, 8), w.subarray(8)].entries()) {
    const expected = Math.max(...Array.from(part, Math.abs)) / WEIGHT_LEVELS;
    assert.ok(Math.abs(scales[c]! - expected) <= 1e-6 * expected, `scale ${c}: ${scales[c]} vs ${expected}`);
  }
  // 7-bit levels: a u8 activation × s8 weight pair sum stays within int16 on CPUs without VNNI.
  assert.equal(WEIGHT_LEVELS, 63);
  assert.equal(Math.max(...Array.from(values, Math.abs)), 63);
  w.forEach((v, i) => void assert.ok(Math.abs(values[i]! * scales[Math.floor(i / 8)]! - v) <= scales[Math.floor(i / 8)]! * (0.5 + 1e-5), `weight ${i}`));
  assert.deepEqual(Array.from(quantizeWeights(new Float32Array(4), 1).values), [0, 0, 0, 0], 'an all-zero channel stays zero');
});

for (const preset of ['seed', 'fast'] as PresetName[]) {
  test(`${preset} preset: calibration finds each conv layer's largest activation, and the int8 graph computes the quantized network`, async () => {
    await initBackend('wasm');
    const model = buildModel(preset, 2, 11);
    // Non-zero biases (positive and negative) so that their int32 quantization is exercised.
    model.setWeights(model.getWeights().map((w, i) => (w.shape.length === 1 ? tf.tidy(() => w.add(tf.randomUniform(w.shape, -0.05, 0.05, 'float32', i))) : w)));
    const size = model.inputs[0]!.shape[1]!;
    const calibration = discImages(40, size, 3);
    const maxima = await calibrateActivations(model, { images: calibration, size });
    // The same maxima from TensorFlow.js's own layer outputs.
    const convs = model.layers.filter((l) => l.getClassName() === 'Conv2D');
    const probe = tf.model({ inputs: model.inputs, outputs: convs.map((l) => l.output as tf.SymbolicTensor) });
    const x = tf.tidy(() => tf.tensor4d(calibration, [40, size, size, 3], 'int32').toFloat().div(255)) as tf.Tensor4D;
    const outs = probe.predict(x) as tf.Tensor[];
    convs.forEach((l, i) => {
      const expected = outs[i]!.max().dataSync()[0]!;
      assert.ok(Math.abs(maxima[l.name]! - expected) <= 1e-4 * expected, `${l.name}: ${maxima[l.name]} vs ${expected}`);
    });
    tf.dispose([x, ...outs]);

    // Against a float simulation of the same arithmetic: equal up to requantization rounding (a step here and there).
    const activationMax = Object.fromEntries(Object.entries(maxima).filter(([name]) => name !== FEATURES_LAYER));
    const tfjs = new TfjsCamEngine(model);
    const int8 = await OrtCamEngine.create(exportOnnx(model, { int8: { activationMax } }), size, 2, tfjs.classifierWeights, { threads: 1, providers: ['cpu'] });
    const images = discImages(6, size, 8);
    const predicted = await int8.predict(split(images, size));
    const simulated = fakeQuantized(model, tf.tensor4d(images, [6, size, size, 3], 'int32').toFloat() as tf.Tensor4D, activationMax);
    const sim = simulated.dataSync() as Float32Array;
    const per = sim.length / 6;
    const range = Math.max(...Array.from(sim));
    for (let i = 0; i < 6; i++) {
      const got = predicted[i]!.features.data;
      let diff = 0;
      for (let j = 0; j < per; j++) diff = Math.max(diff, Math.abs(got[j]! - sim[i * per + j]!));
      assert.ok(diff <= 0.03 * range, `image ${i}: features differ from the simulation by ${diff} (range ${range})`);
    }
    simulated.dispose();
    int8.dispose();
    tfjs.dispose();
  });
}

test('buildInt8Graph reports how the int8 graph agrees with fp32, and the report is what the two graphs give', async () => {
  await initBackend('wasm');
  const model = buildModel('fast', 2, 4);
  const size = 64;
  const { bytes, report } = await buildInt8Graph(model, { images: discImages(64, size, 1), size }, { images: discImages(24, size, 2), size });
  assert.equal(report.calibrationImages, 64);
  assert.equal(report.evaluatedImages, 24);
  assert.ok(report.classAgreement >= 0 && report.classAgreement <= 1);
  assert.ok(report.boxIou.min <= report.boxIou.p05 && report.boxIou.p05 <= report.boxIou.median && report.boxIou.median <= 1);
  assert.ok(report.camMaxAbsDiff.median <= report.camMaxAbsDiff.p95);
  // Recompute the CAM difference of one image from the two graphs directly.
  const tfjs = new TfjsCamEngine(model);
  const [f32, i8] = await Promise.all([exportOnnx(model), bytes].map((b) => OrtCamEngine.create(b, size, 2, tfjs.classifierWeights, { threads: 1, providers: ['cpu'] })));
  const images = split(discImages(24, size, 2), size);
  const [a, b] = [await f32!.predict(images), await i8!.predict(images)];
  const diffs = a.map((pa, i) => {
    const c = pa.logits[1]! > pa.logits[0]! ? 1 : 0;
    const ma = minMaxNormalise(upsampleBilinear(camForClass(pa.features, tfjs.classifierWeights, 2, c), 16, 16, size, size));
    const mb = minMaxNormalise(upsampleBilinear(camForClass(b[i]!.features, tfjs.classifierWeights, 2, c), 16, 16, size, size));
    return ma.reduce((m, v, j) => Math.max(m, Math.abs(v - mb[j]!)), 0);
  });
  assert.ok(Math.abs([...diffs].sort((x, y) => x - y)[12]! - report.camMaxAbsDiff.median) < 1e-6);
  f32!.dispose();
  i8!.dispose();
  tfjs.dispose();
});
