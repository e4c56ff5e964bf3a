// A real batch through the queues on the WebGPU paths: cam-worker with ONNX Runtime's WebGPU provider (and the
// tfjs webgpu backend), results compared with a CPU worker's for the same images. Lavapipe in CI; skipped with the
// probe's reason where no adapter can be had.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { isCellResult, probeWebGpu } from '@camflow/common';
import { readResults } from '../../packages/cli/src/wait.ts';
import { publishUntrained, runCli, startCluster, syntheticFolder } from '../helpers/cluster.ts';

const probe = await probeWebGpu();
const noAdapter = probe.ok ? false : `no WebGPU adapter here: ${probe.reason}`;

test('a batch served on the ONNX Runtime WebGPU provider: every result says so, and matches the CPU provider’s', { skip: noAdapter, timeout: 600_000 }, async () => {
  const c = await startCluster();
  try {
    await publishUntrained(c.ctx);
    await syntheticFolder(c.dir, 24, 5);
    const folder = `${c.dir}/batch-5`;
    const gpuWorker = c.spawnWorker('cam', { CAM_EXECUTION_PROVIDERS: 'webgpu', TF_BACKEND: 'webgpu' });
    const gpuRun = await runCli(c, ['submit', folder, '--wait', '--json', '--key', 'gpu-run']);
    assert.equal(gpuRun.code, 0, gpuRun.stderr);
    const gpuBatch = JSON.parse(gpuRun.stdout.trim().split('\n').pop()!).batchId as string;
    gpuWorker.kill('SIGTERM');
    await gpuWorker.exited;
    c.spawnWorker('cam', { CAM_EXECUTION_PROVIDERS: 'cpu' });
    const cpuRun = await runCli(c, ['submit', folder, '--wait', '--json', '--key', 'cpu-run']);
    assert.equal(cpuRun.code, 0, cpuRun.stderr);
    const cpuBatch = JSON.parse(cpuRun.stdout.trim().split('\n').pop()!).batchId as string;
    const gpu = (await readResults(c.ctx.store, gpuBatch)).filter(isCellResult);
    const cpu = new Map((await readResults(c.ctx.store, cpuBatch)).filter(isCellResult).map((r) => [r.name, r]));
    assert.equal(gpu.length, 24);
    for (const r of gpu) {
      assert.equal(r.engine, 'onnxruntime/webgpu');
      const other = cpu.get(r.name)!;
      assert.equal(other.engine, 'onnxruntime/cpu');
      assert.equal(r.predicted.label, other.predicted.label, r.name);
      for (const k of Object.keys(r.probabilities)) assert.ok(Math.abs(r.probabilities[k]! - other.probabilities[k]!) < 1e-4, `${r.name} ${k}`);
      assert.deepEqual(r.cams.map((m) => m.peak), other.cams.map((m) => m.peak), `${r.name}: same CAM peaks`);
    }
  } finally {
    await c.close();
  }
});
