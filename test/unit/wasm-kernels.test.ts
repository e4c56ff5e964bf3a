import { test } from 'node:test';
import assert from 'node:assert/strict';
import * as tf from '@tensorflow/tfjs';
import '@tensorflow/tfjs-backend-wasm';
import { registerWasmTrainingKernels } from '../../packages/common/src/model/wasm-kernels.ts';

/** Gradients of sum(conv2d(x, w) * probe) w.r.t. x and w on one backend. */
async function convGrads(backend: string, xData: Float32Array, wData: Float32Array, xs: [number, number, number, number], ws: [number, number, number, number], strides: number, pad: 'valid' | 'same') {
  await tf.setBackend(backend);
  return tf.tidy(() => {
    const x = tf.tensor4d(xData, xs);
    const w = tf.tensor4d(wData, ws);
    const f = (a: tf.Tensor, b: tf.Tensor) => {
      const y = tf.conv2d(a as tf.Tensor4D, b as tf.Tensor4D, strides, pad);
      // A fixed, non-uniform upstream gradient so every output position matters differently.
      const probe = tf.range(0, y.size).reshape(y.shape).sin();
      return tf.sum(tf.mul(y, probe));
    };
    const [dx, dw] = tf.grads(f)([x, w]);
    return { dx: dx!.dataSync().slice() as Float32Array, dw: dw!.dataSync().slice() as Float32Array };
  });
}

function maxAbsDiff(a: Float32Array, b: Float32Array): number {
  assert.equal(a.length, b.length);
  let m = 0;
  for (let i = 0; i < a.length; i++) m = Math.max(m, Math.abs(a[i]! - b[i]!));
  return m;
}

const cases: { name: string; xs: [number, number, number, number]; ws: [number, number, number, number]; strides: number; pad: 'valid' | 'same' }[] = [
  { name: '5×5 valid, stride 1 (the seed layers)', xs: [3, 12, 11, 3], ws: [5, 5, 3, 4], strides: 1, pad: 'valid' },
  { name: '3×3 same, stride 1 (the fast preset)', xs: [2, 9, 10, 4], ws: [3, 3, 4, 5], strides: 1, pad: 'same' },
  { name: '3×3 same, stride 2', xs: [2, 9, 8, 2], ws: [3, 3, 2, 3], strides: 2, pad: 'same' },
  { name: '4×4 valid, stride 2', xs: [2, 11, 10, 2], ws: [4, 4, 2, 3], strides: 2, pad: 'valid' },
];

test('the wasm backend gains Conv2DBackpropFilter and a transposed-conv Conv2DBackpropInput that match the cpu backend', async (t) => {
  await tf.setBackend('wasm');
  await tf.ready();
  registerWasmTrainingKernels();
  assert.ok(tf.getKernel('Conv2DBackpropFilter', 'wasm'), 'kernel registered');
  for (const c of cases) {
    await t.test(c.name, async () => {
      const rand = (n: number, seed: number) => Float32Array.from({ length: n }, (_, i) => Math.sin(i * 12.9898 + seed) * 0.5);
      const xData = rand(c.xs.reduce((a, b) => a * b), 1);
      const wData = rand(c.ws.reduce((a, b) => a * b), 2);
      const cpu = await convGrads('cpu', xData, wData, c.xs, c.ws, c.strides, c.pad);
      const wasm = await convGrads('wasm', xData, wData, c.xs, c.ws, c.strides, c.pad);
      assert.ok(maxAbsDiff(cpu.dw, wasm.dw) < 1e-3, `dW differs by ${maxAbsDiff(cpu.dw, wasm.dw)}`);
      assert.ok(maxAbsDiff(cpu.dx, wasm.dx) < 1e-3, `dx differs by ${maxAbsDiff(cpu.dx, wasm.dx)}`);
      // Not a vacuous comparison: the gradients are not all zero.
      assert.ok(cpu.dw.some((v) => Math.abs(v) > 1e-3));
    });
  }
});
