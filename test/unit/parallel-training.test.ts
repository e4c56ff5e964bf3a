// Data-parallel CPU training: worker threads with their own wasm instance compute shard gradients; the step they
// add up to is the step of one thread over the whole batch.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { buildModel, initBackend, tf } from '@camflow/common';
import { GradientPool, shardRanges } from '../../packages/trainer/src/parallel.ts';
import { shardGradients } from '../../packages/trainer/src/gradient-step.ts';
import { fitWithRestarts, type TensorData } from '../../packages/trainer/src/fit.ts';

function bytes(n: number, seed: number): Uint8Array {
  let s = seed;
  return Uint8Array.from({ length: n }, () => ((s = (s * 1103515245 + 12345) % 2147483648) >>> 16) & 255);
}

test('a batch splits into near-equal contiguous shards, none empty', () => {
  assert.deepEqual(shardRanges(10, 3), [{ start: 0, end: 3 }, { start: 3, end: 6 }, { start: 6, end: 10 }]);
  assert.deepEqual(shardRanges(1, 4), [{ start: 0, end: 1 }]);
  assert.deepEqual(shardRanges(8, 1), [{ start: 0, end: 8 }]);
});

test('three threads give the gradients of one thread over the whole batch (class-weighted loss)', async () => {
  await initBackend('wasm');
  const model = buildModel('fast', 2, 3);
  const vars = model.trainableWeights.map((w) => w.read() as tf.Variable);
  const n = 12;
  const per = 64 * 64 * 3;
  const x = Float32Array.from(bytes(n * per, 5), (v) => v / 255);
  const labels = Int32Array.from({ length: n }, (_, i) => (i % 3 === 0 ? 1 : 0));
  const sampleWeights = Float32Array.from(labels, (l) => (l === 1 ? 1.5 : 0.75));
  const whole = await shardGradients(model, vars, { x: x.slice(), size: 64, labels, sampleWeights }, 2);
  const pool = await GradientPool.start(3, 'fast', 2, 'wasm');
  try {
    const shards = shardRanges(n, 3).map(({ start, end }) => ({ x: x.slice(start * per, end * per), size: 64, labels: labels.slice(start, end), sampleWeights: sampleWeights.slice(start, end) }));
    const { lossSum, grads } = await pool.gradients(model, vars, shards, 2);
    assert.ok(Math.abs(lossSum - whole.lossSum) < 1e-4 * Math.abs(whole.lossSum), `loss ${lossSum} vs ${whole.lossSum}`);
    for (let k = 0; k < vars.length; k++) {
      const got = (await grads[vars[k]!.name]!.data()) as Float32Array;
      const want = whole.grads[k]!;
      let scale = 1e-8;
      let diff = 0;
      for (let j = 0; j < want.length; j++) {
        scale = Math.max(scale, Math.abs(want[j]! / n));
        diff = Math.max(diff, Math.abs(got[j]! - want[j]! / n));
      }
      assert.ok(diff / scale < 1e-4, `${vars[k]!.name}: relative difference ${diff / scale}`);
    }
    tf.dispose(Object.values(grads));
  } finally {
    await pool.close();
    model.dispose();
  }
});

test('an epoch trained on two threads follows the one-thread run (same losses, same validation)', async () => {
  await initBackend('wasm');
  const data = (n: number, seed: number): TensorData => ({ images: bytes(n * 64 * 64 * 3, seed), labels: Int32Array.from({ length: n }, (_, i) => i % 2), size: 64 });
  const [train, validation] = [data(40, 1), data(16, 2)];
  const params = { preset: 'fast' as const, numClasses: 2, epochs: 2, batchSize: 16, learningRate: 0.002, seed: 4, maxRestarts: 0, patience: 99, augment: true, classWeights: false };
  const one = await fitWithRestarts(params, train, validation);
  const pool = await GradientPool.start(2, 'fast', 2, 'wasm');
  const two = await fitWithRestarts(params, train, validation, { pool }).finally(() => pool.close());
  for (let e = 0; e < 2; e++) {
    assert.ok(Math.abs(one.history[e]!.loss - two.history[e]!.loss) < 1e-4, `epoch ${e + 1} loss ${one.history[e]!.loss} vs ${two.history[e]!.loss}`);
    assert.ok(Math.abs(one.history[e]!.valLoss - two.history[e]!.valLoss) < 1e-4, `epoch ${e + 1} val loss`);
  }
  one.model.dispose();
  two.model.dispose();
});

test('reading the step losses back every 8 steps (the default) gives the history of reading each step, and frees every tensor', async () => {
  await initBackend('wasm');
  const data = (n: number, seed: number): TensorData => ({ images: bytes(n * 64 * 64 * 3, seed), labels: Int32Array.from({ length: n }, (_, i) => i % 2), size: 64 });
  // 11 steps an epoch (the last one short): one full group of 8, then a remainder read at the epoch's end.
  const [train, validation] = [data(84, 3), data(16, 4)];
  const params = { preset: 'fast' as const, numClasses: 2, epochs: 2, batchSize: 8, learningRate: 0.002, seed: 5, maxRestarts: 0, patience: 99, augment: true, classWeights: true };
  const each = await fitWithRestarts({ ...params, lossReadEvery: 1 }, train, validation);
  each.model.dispose();
  const before = tf.memory().numTensors;
  const grouped = await fitWithRestarts(params, train, validation);
  grouped.model.dispose();
  assert.equal(tf.memory().numTensors, before, 'no tensor is left behind');
  assert.deepEqual(grouped.history.map((h) => h.loss), each.history.map((h) => h.loss));
  assert.deepEqual(grouped.history.map((h) => h.valLoss), each.history.map((h) => h.valLoss));
});
