import { Worker } from 'node:worker_threads';
import { CamflowError, tf, type BackendPreference, type Logger, type PresetName } from '@camflow/common';
import { shardGradients, type Shard } from './gradient-step.js';
import type { GradientReply, GradientRequest, GradientWorkerData } from './gradient-worker.js';
import type { GradientEngine } from './ort-gradients.js';

/**
 * Data-parallel training on every CPU core. The wasm backend computes on one thread, and its threaded build does
 * not start in Node (tfjs 4.22: `WASM_HAS_MULTITHREAD_SUPPORT` is false, forcing it fails to initialise), so
 * camflow splits each batch instead: the main thread and `threads − 1` worker threads, each with its own wasm
 * instance and a replica of the model, compute the gradients of their shard's summed loss; the main thread adds
 * them, divides by the batch size and applies one optimizer step. The step is the same as one pass over the whole
 * batch (up to float summation order; tested), so results do not depend on the thread count.
 */
export class GradientPool implements GradientEngine {
  private nextId = 0;
  private readonly pending = new Map<number, { resolve: (r: { lossSum: number; grads: Float32Array[] }) => void; reject: (e: Error) => void }>();

  private constructor(
    private readonly workers: Worker[],
    readonly threads: number,
  ) {
    for (const w of workers) {
      w.on('message', (reply: GradientReply) => {
        const p = this.pending.get(reply.id);
        if (!p) return;
        this.pending.delete(reply.id);
        if ('error' in reply) p.reject(new CamflowError('TRAIN', `gradient thread failed: ${reply.error}`));
        else p.resolve(reply);
      });
      w.on('error', (error) => this.failAll(error));
      // A thread that dies (out of memory, a native crash) must fail the step, never leave it waiting.
      w.on('exit', (code) => this.failAll(new CamflowError('TRAIN', `gradient thread exited with code ${code}`)));
    }
  }

  /** One shard per thread. */
  get shards(): number {
    return this.threads;
  }

  /** Start `threads − 1` worker threads (the main thread is the last one). */
  static async start(threads: number, preset: PresetName, numClasses: number, backend: BackendPreference, log?: Logger): Promise<GradientPool> {
    const started = performance.now();
    const workers = Array.from({ length: Math.max(0, threads - 1) }, () => spawnGradientThread({ preset, numClasses, backend }));
    await Promise.all(
      workers.map(
        (w) =>
          new Promise<void>((resolve, reject) => {
            const onMessage = (m: { ready?: boolean }) => {
              if (m.ready) {
                w.off('message', onMessage);
                resolve();
              }
            };
            w.on('message', onMessage);
            w.once('error', reject);
            w.once('exit', (code) => reject(new CamflowError('TRAIN', `gradient thread exited with code ${code} before it was ready`)));
          }),
      ),
    );
    log?.info({ threads, ms: Math.round(performance.now() - started) }, 'data-parallel training threads ready');
    return new GradientPool(workers, threads);
  }

  /**
   * Mean-loss gradients of the whole batch, as tensors keyed by variable name (for `optimizer.applyGradients`),
   * and the batch's summed loss. `shards[0]` is computed here, the rest by the worker threads.
   */
  async gradients(model: tf.LayersModel, vars: tf.Variable[], shards: Shard[], numClasses: number): Promise<{ lossSum: number; grads: tf.NamedTensorMap }> {
    if (shards.length > this.threads) throw new CamflowError('TRAIN', `${shards.length} shards for ${this.threads} threads`);
    const weights = shards.length > 1 ? await Promise.all(vars.map((v) => v.data() as Promise<Float32Array>)) : [];
    const remote = shards.slice(1).map((shard, i) => this.request(this.workers[i]!, weights, shard));
    const local = await shardGradients(model, vars, shards[0]!, numClasses);
    const parts = [local, ...(await Promise.all(remote))];
    const n = shards.reduce((s, sh) => s + sh.labels.length, 0);
    const grads: tf.NamedTensorMap = {};
    vars.forEach((v, k) => {
      const sum = new Float32Array(parts[0]!.grads[k]!.length);
      for (const p of parts) {
        const g = p.grads[k]!;
        for (let j = 0; j < sum.length; j++) sum[j]! += g[j]!;
      }
      for (let j = 0; j < sum.length; j++) sum[j]! /= n;
      grads[v.name] = tf.tensor(sum, v.shape);
    });
    return { lossSum: parts.reduce((s, p) => s + p.lossSum, 0), grads };
  }

  private request(worker: Worker, weights: Float32Array[], shard: Shard): Promise<{ lossSum: number; grads: Float32Array[] }> {
    const id = this.nextId++;
    return new Promise((resolve, reject) => {
      this.pending.set(id, { resolve, reject });
      // Weights are copied (the main thread keeps them); the shard's pixels move.
      worker.postMessage({ id, weights, shard } satisfies GradientRequest, [shard.x.buffer as ArrayBuffer]);
    });
  }

  private failAll(error: Error): void {
    for (const p of this.pending.values()) p.reject(error);
    this.pending.clear();
  }

  async close(): Promise<void> {
    this.failAll(new CamflowError('TRAIN', 'gradient pool closed'));
    await Promise.all(this.workers.map((w) => w.terminate()));
  }
}

/**
 * Worker threads do not inherit the main thread's `--import tsx` loader: start them through a small bootstrap that
 * registers tsx's ESM hooks in the thread, then imports the TypeScript entry.
 */
function spawnGradientThread(data: GradientWorkerData): Worker {
  const entry = new URL('./gradient-worker.ts', import.meta.url).href;
  const tsx = import.meta.resolve('tsx/esm/api');
  const boot = `import(${JSON.stringify(tsx)}).then((m) => { m.register(); return import(${JSON.stringify(entry)}); }).catch((e) => { throw e; });`;
  return new Worker(boot, { eval: true, workerData: data });
}

/** Pure: split `n` items into at most `parts` contiguous shards of near-equal size (none empty). */
export function shardRanges(n: number, parts: number): { start: number; end: number }[] {
  const k = Math.max(1, Math.min(parts, n));
  return Array.from({ length: k }, (_, i) => ({ start: Math.floor((i * n) / k), end: Math.floor(((i + 1) * n) / k) }));
}
