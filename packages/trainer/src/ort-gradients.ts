import type { InferenceSession, Tensor as OrtTensor } from 'onnxruntime-node';
import { CamflowError, GRAD_INPUT, GRAD_LABELS, GRAD_LOSS, GRAD_SAMPLE_WEIGHTS, exportGradientGraph, gradOutputName, gradWeightName, tf, type Logger } from '@camflow/common';
import type { Shard } from './gradient-step.js';

/** What the fitting loop asks of a gradient engine: the batch's mean-loss gradients, from `shards` shards. */
export interface GradientEngine {
  /** How many shards a batch is split into (one per thread for the data-parallel pool; one for ONNX Runtime). */
  readonly shards: number;
  gradients(model: tf.LayersModel, vars: tf.Variable[], shards: Shard[], numClasses: number): Promise<{ lossSum: number; grads: tf.NamedTensorMap }>;
  close(): Promise<void>;
}

type Ort = typeof import('onnxruntime-node');
/** ONNX Runtime providers the gradient graph is run on (CUDA only where its provider libraries are installed). */
export type GradientProvider = 'cpu' | 'webgpu' | 'cuda';

/**
 * Training gradients on ONNX Runtime's CPU kernels: the model's forward and backward pass as one ONNX graph
 * (`exportGradientGraph`), run with the current weights as inputs; the optimizer step stays in tfjs. ONNX Runtime
 * runs its convolutions with MLAS on every core (intra-op threads), several times faster per core than tfjs's wasm
 * kernels (128-bit SIMD, no FMA): measured here, seed preset b32, 2 cores: 31.5 images/s against 10.8 for the
 * data-parallel wasm pool. Gradients equal tfjs's to ~1e-6 relative (`test/unit/ort-gradients.test.ts`).
 */
export class OrtGradients implements GradientEngine {
  readonly shards = 1;

  private constructor(
    private readonly ort: Ort,
    private readonly session: InferenceSession,
    readonly provider: GradientProvider,
  ) {}

  /**
   * Build the model's gradient graph and open a session on `threads` intra-op threads (0: every core), on ONNX
   * Runtime's CPU provider, or a GPU provider first (`webgpu`: every op of the graph runs there, checked against the
   * CPU provider in `test/unit/webgpu.test.ts`; `cuda`: unmeasured here, for `bench:gpu`).
   */
  static async start(model: tf.LayersModel, threads: number, log?: Logger, provider: GradientProvider = 'cpu'): Promise<OrtGradients> {
    const started = performance.now();
    const ort = await import('onnxruntime-node');
    const session = await ort.InferenceSession.create(exportGradientGraph(model), { executionProviders: provider === 'cpu' ? ['cpu'] : [provider, 'cpu'], intraOpNumThreads: threads, graphOptimizationLevel: 'all' });
    log?.info({ gradients: `onnxruntime-${provider}`, threads: threads || 'all cores', ms: Math.round(performance.now() - started) }, 'training gradients on ONNX Runtime');
    return new OrtGradients(ort, session, provider);
  }

  async gradients(model: tf.LayersModel, vars: tf.Variable[], shards: Shard[], numClasses: number): Promise<{ lossSum: number; grads: tf.NamedTensorMap }> {
    const shard = shards.length === 1 ? shards[0]! : concatShards(shards);
    const n = shard.labels.length;
    if (vars.length !== model.trainableWeights.length) throw new CamflowError('TRAIN', `${vars.length} variables for a model with ${model.trainableWeights.length} trainable weights`);
    const { Tensor } = this.ort;
    const onehot = new Float32Array(n * numClasses);
    shard.labels.forEach((l, i) => {
      onehot[i * numClasses + l] = 1;
    });
    const feeds: Record<string, OrtTensor> = {
      [GRAD_INPUT]: new Tensor('float32', shard.x, [n, shard.size, shard.size, 3]),
      [GRAD_LABELS]: new Tensor('float32', onehot, [n, numClasses]),
      [GRAD_SAMPLE_WEIGHTS]: new Tensor('float32', shard.sampleWeights ?? new Float32Array(n).fill(1), [n]),
    };
    const weights = await Promise.all(vars.map((v) => v.data() as Promise<Float32Array>));
    vars.forEach((v, k) => {
      feeds[gradWeightName(k)] = new Tensor('float32', weights[k]!, v.shape);
    });
    const out = await this.session.run(feeds);
    const grads: tf.NamedTensorMap = {};
    vars.forEach((v, k) => {
      const g = out[gradOutputName(k)]!.data as Float32Array;
      const mean = new Float32Array(g.length);
      for (let j = 0; j < g.length; j++) mean[j] = g[j]! / n;
      grads[v.name] = tf.tensor(mean, v.shape);
    });
    return { lossSum: (out[GRAD_LOSS]!.data as Float32Array)[0]!, grads };
  }

  async close(): Promise<void> {
    await this.session.release();
  }
}

function concatShards(shards: Shard[]): Shard {
  const size = shards[0]!.size;
  const n = shards.reduce((s, sh) => s + sh.labels.length, 0);
  const x = new Float32Array(n * size * size * 3);
  const labels = new Int32Array(n);
  const weighted = shards.some((s) => s.sampleWeights);
  const sampleWeights = weighted ? new Float32Array(n) : undefined;
  let at = 0;
  for (const s of shards) {
    x.set(s.x, at * size * size * 3);
    labels.set(s.labels, at);
    sampleWeights?.set(s.sampleWeights ?? new Float32Array(s.labels.length).fill(1), at);
    at += s.labels.length;
  }
  return { x, size, labels, ...(sampleWeights ? { sampleWeights } : {}) };
}
