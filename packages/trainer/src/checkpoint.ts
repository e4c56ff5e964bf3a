import { createHash } from 'node:crypto';
import { keys, tf, type ObjectStore } from '@camflow/common';
import type { EpochMetrics, FitCheckpoint } from './fit.js';

interface CheckpointMeta {
  paramsHash: string;
  attempt: number;
  epoch: number;
  history: EpochMetrics[];
  shapes: number[][];
  /** The attempts restarted before this checkpoint and why, so that a resumed job still reports them. */
  restarts?: string[];
}

/** A checkpoint as loaded: what `fit` resumes from, and the restarts said so far. */
export type LoadedCheckpoint = FitCheckpoint & { restarts: string[] };

/** Key-safe identity of a job (scheduler job ids contain ':'). */
export const jobKey = (jobId: string) => `j${createHash('sha256').update(jobId).digest('hex').slice(0, 20)}`;

export const paramsHash = (params: unknown) => createHash('sha256').update(JSON.stringify(params)).digest('hex').slice(0, 16);

/**
 * Per-epoch training checkpoints in S3: weights first, then the JSON that points at them (the commit point), so
 * a crash while writing leaves the previous checkpoint intact.
 */
export class CheckpointStore {
  constructor(
    private readonly store: ObjectStore,
    private readonly key: string,
    private readonly hash: string,
  ) {}

  async save(c: FitCheckpoint, restarts: readonly string[] = []): Promise<void> {
    const arrays = (await Promise.all(c.weights.map((w) => w.data()))) as Float32Array[];
    const total = arrays.reduce((n, a) => n + a.length, 0);
    const flat = new Float32Array(total);
    let o = 0;
    for (const a of arrays) {
      flat.set(a, o);
      o += a.length;
    }
    await this.store.put(keys.trainCheckpointWeights(this.key), new Uint8Array(flat.buffer));
    const meta: CheckpointMeta = { paramsHash: this.hash, attempt: c.attempt, epoch: c.epoch, history: c.history, shapes: c.weights.map((w) => w.shape), ...(restarts.length ? { restarts: [...restarts] } : {}) };
    await this.store.putJson(keys.trainCheckpoint(this.key), meta);
  }

  /** The last checkpoint of this job with the same parameters, if any. */
  async load(): Promise<LoadedCheckpoint | undefined> {
    const meta = await this.store.getJsonIfExists<CheckpointMeta>(keys.trainCheckpoint(this.key));
    if (!meta || meta.paramsHash !== this.hash) return undefined;
    const bytes = await this.store.get(keys.trainCheckpointWeights(this.key));
    const flat = new Float32Array(bytes.buffer.slice(bytes.byteOffset, bytes.byteOffset + bytes.byteLength));
    let o = 0;
    const weights = meta.shapes.map((shape) => {
      const n = shape.reduce((a, b) => a * b, 1);
      const t = tf.tensor(flat.subarray(o, o + n), shape);
      o += n;
      return t;
    });
    return { attempt: meta.attempt, epoch: meta.epoch, history: meta.history, weights, restarts: meta.restarts ?? [] };
  }

  async clear(): Promise<void> {
    await this.store.deleteMany([keys.trainCheckpoint(this.key), keys.trainCheckpointWeights(this.key)]).catch(() => undefined);
  }
}
