import { test } from 'node:test';
import assert from 'node:assert/strict';
import {
  OrtCamEngine,
  TfjsCamEngine,
  buildModel,
  camForClass,
  exportOnnx,
  initBackend,
  localize,
  minMaxNormalise,
  presets,
  upsampleBilinear,
  type PresetName,
} from '@camflow/common';

function randomImages(n: number, size: number, seed: number): Uint8Array[] {
  let s = seed;
  const next = () => ((s = (s * 1103515245 + 12345) % 2147483648) / 2147483648);
  return Array.from({ length: n }, () => Uint8Array.from({ length: size * size * 3 }, () => Math.floor(next() * 256)));
}

const maxAbs = (a: ArrayLike<number>, b: ArrayLike<number>) => {
  let m = 0;
  for (let i = 0; i < a.length; i++) m = Math.max(m, Math.abs(a[i]! - b[i]!));
  return m;
};

for (const preset of ['fast', 'seed'] as PresetName[]) {
  test(`${preset} preset: ONNX Runtime and TensorFlow.js give the same logits, CAMs and boxes`, async () => {
    await initBackend('wasm');
    const model = buildModel(preset, 2, 5);
    // Give the biases non-zero values so the export of every weight is exercised.
    model.setWeights(model.getWeights().map((w, i) => (w.shape.length === 1 ? w.add(0.01 * (i + 1)) : w)));
    const tfjs = new TfjsCamEngine(model);
    const ort = await OrtCamEngine.create(exportOnnx(model), tfjs.inputSize, tfjs.numClasses, tfjs.classifierWeights, { threads: 1, providers: ['cpu'] });
    assert.equal(tfjs.inputSize, presets[preset].inputSize);
    const images = randomImages(3, tfjs.inputSize, 99);
    const [a, b] = [await tfjs.predict(images), await ort.predict(images)];
    for (let i = 0; i < images.length; i++) {
      assert.ok(maxAbs(a[i]!.logits, b[i]!.logits) <= 1e-4 * Math.max(1, ...Array.from(a[i]!.logits, Math.abs)), `logits ${a[i]!.logits} vs ${b[i]!.logits}`);
      assert.deepEqual([b[i]!.features.height, b[i]!.features.width, b[i]!.features.channels], [a[i]!.features.height, a[i]!.features.width, a[i]!.features.channels]);
      for (let c = 0; c < 2; c++) {
        const ca = camForClass(a[i]!.features, tfjs.classifierWeights, 2, c);
        const cb = camForClass(b[i]!.features, ort.classifierWeights, 2, c);
        const na = minMaxNormalise(upsampleBilinear(ca, a[i]!.features.height, a[i]!.features.width, 100, 120));
        const nb = minMaxNormalise(upsampleBilinear(cb, b[i]!.features.height, b[i]!.features.width, 100, 120));
        assert.ok(maxAbs(na, nb) <= 1e-4, `normalised CAM differs by ${maxAbs(na, nb)}`);
        const [ba, bb] = [localize(na, 120, 100).box!, localize(nb, 120, 100).box!];
        assert.deepEqual([bb.x, bb.y, bb.width, bb.height, bb.area], [ba.x, ba.y, ba.width, ba.height, ba.area], 'same box');
        assert.ok(Math.abs(ba.score - bb.score) <= 1e-4);
      }
    }
    ort.dispose();
    tfjs.dispose();
  });
}
