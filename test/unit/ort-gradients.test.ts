import { test } from 'node:test';
import assert from 'node:assert/strict';
import { buildModel, initBackend, tf } from '@camflow/common';
import { shardGradients } from '../../packages/trainer/src/gradient-step.ts';
import { OrtGradients } from '../../packages/trainer/src/ort-gradients.ts';

// The reference: tfjs's cpu backend for the fast preset; for the seed preset (128², 5×5 convolutions, minutes on the
// cpu backend) the wasm trainer's kernels, themselves checked against the cpu backend in wasm-kernels.test.ts, whose
// float sums differ in a different order (first layer's filter gradient: 5e-4 of its largest value, 7e-6 against cpu).
const cases = [
  { preset: 'fast', backend: 'cpu', tolerance: 1e-4 },
  { preset: 'seed', backend: 'wasm', tolerance: 2e-3 },
] as const;

test("ONNX Runtime's training gradients equal tfjs's for both presets, with sample weights", async () => {
  for (const { preset, backend, tolerance } of cases) {
    if (backend === 'wasm') await initBackend('wasm');
    else await tf.setBackend(backend);
    // Model seed 2: an initialisation whose head is open on this input (the trainer draws shut ones again, presets.test.ts).
    const model = buildModel(preset, 2, 2);
    const s = model.inputs[0]!.shape[1]!;
    const n = 2;
    const x = Float32Array.from({ length: n * s * s * 3 }, (_, i) => (Math.sin(i * 0.37) + 1) / 2);
    const labels = Int32Array.from([0, 1]);
    const sampleWeights = Float32Array.from([1, 2]);
    const vars = model.trainableWeights.map((w) => w.read() as tf.Variable);
    const ref = await shardGradients(model, vars, { x: x.slice(), size: s, labels, sampleWeights }, 2);
    const engine = await OrtGradients.start(model, 1);
    // Two shards: the engine runs them as one batch.
    const { lossSum, grads } = await engine.gradients(model, vars, [{ x: x.slice(0, s * s * 3), size: s, labels: labels.slice(0, 1), sampleWeights: sampleWeights.slice(0, 1) }, { x: x.slice(s * s * 3), size: s, labels: labels.slice(1), sampleWeights: sampleWeights.slice(1) }], 2);
    assert.ok(Math.abs(lossSum - ref.lossSum) <= 1e-5 * Math.abs(ref.lossSum), `${preset}: loss ${lossSum} vs ${ref.lossSum}`);
    vars.forEach((v, k) => {
      // The engine returns the batch's mean gradients; shardGradients the summed ones.
      const got = grads[v.name]!.dataSync();
      const want = ref.grads[k]!;
      let scale = 0;
      let diff = 0;
      for (let i = 0; i < want.length; i++) {
        scale = Math.max(scale, Math.abs(want[i]!));
        diff = Math.max(diff, Math.abs(got[i]! * n - want[i]!));
      }
      assert.ok(scale > 0, `${preset} ${v.name}: a gradient that is not all zero`);
      assert.ok(diff <= tolerance * scale, `${preset} ${v.name}: max difference ${diff} for gradients up to ${scale}`);
    });
    tf.dispose(Object.values(grads));
    await engine.close();
    model.dispose();
  }
});

test('TRAIN_GRADIENTS: ONNX Runtime on the CPU backends; with auto, one that cannot start falls back to tfjs; pinned, it fails', async () => {
  const { gradientEngine } = await import('../../packages/trainer/src/train-job.ts');
  const { createLogger } = await import('@camflow/common');
  const log = createLogger({ level: 'silent', name: 'test' });
  const broken = async () => {
    throw new Error('no onnxruntime binding for this platform');
  };
  const ort = await gradientEngine({ backend: 'wasm', threads: 1 }, 'fast', 2, log);
  assert.ok(ort instanceof OrtGradients, 'auto on wasm: ONNX Runtime');
  await ort.close();
  assert.equal(await gradientEngine({ backend: 'webgpu', threads: 1 }, 'fast', 2, log), undefined, 'GPU backends: tfjs itself');
  assert.equal(await gradientEngine({ backend: 'wasm', threads: 1, gradients: 'tfjs' }, 'fast', 2, log), undefined, 'tfjs on one thread: no pool');
  assert.equal(await gradientEngine({ backend: 'wasm', threads: 1 }, 'fast', 2, log, broken), undefined, 'auto: falls back to tfjs');
  await assert.rejects(gradientEngine({ backend: 'wasm', threads: 1, gradients: 'onnx' }, 'fast', 2, log, broken), /no onnxruntime binding/);
});
