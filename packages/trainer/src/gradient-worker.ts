// A data-parallel training thread: holds a replica of the model on its own wasm backend, and for each step takes
// the main thread's current weights and returns the gradients of its shard's summed loss.
import { parentPort, workerData } from 'node:worker_threads';
import { buildModel, initBackend, tf, type BackendPreference, type PresetName } from '@camflow/common';
import { shardGradients, type Shard } from './gradient-step.js';

export interface GradientWorkerData {
  preset: PresetName;
  numClasses: number;
  backend: BackendPreference;
}

export type GradientRequest = { id: number; weights: Float32Array[]; shard: Shard };
export type GradientReply = { id: number; lossSum: number; grads: Float32Array[] } | { id: number; error: string };

const { preset, numClasses, backend } = workerData as GradientWorkerData;
await initBackend(backend);
const model = buildModel(preset, numClasses, 1);
const vars = model.trainableWeights.map((w) => w.read() as tf.Variable);

parentPort!.on('message', (req: GradientRequest) => {
  void (async () => {
    try {
      req.weights.forEach((w, i) => {
        const t = tf.tensor(w, vars[i]!.shape);
        vars[i]!.assign(t);
        t.dispose();
      });
      const { lossSum, grads } = await shardGradients(model, vars, req.shard, numClasses);
      parentPort!.postMessage({ id: req.id, lossSum, grads } satisfies GradientReply, grads.map((g) => g.buffer as ArrayBuffer));
    } catch (error) {
      parentPort!.postMessage({ id: req.id, error: (error as Error).message } satisfies GradientReply);
    }
  })();
});
parentPort!.postMessage({ ready: true });
