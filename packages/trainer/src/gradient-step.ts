import { tf } from '@camflow/common';

/** One shard of a training batch, as floats in [0, 1] (already augmented), with labels and optional loss weights. */
export interface Shard {
  x: Float32Array;
  size: number;
  labels: Int32Array;
  sampleWeights?: Float32Array | undefined;
}

/** A shard's summed loss and the gradients of that sum, one array per trainable variable (in their order). */
export interface ShardGradients {
  lossSum: number;
  grads: Float32Array[];
}

/**
 * Gradients of the *summed* (not mean) weighted cross-entropy over one shard. Summed, so shards add up: the
 * batch's mean-loss gradient is Σ shards / batch size — the same numbers as one pass over the whole batch.
 */
export async function shardGradients(model: tf.LayersModel, vars: tf.Variable[], shard: Shard, numClasses: number): Promise<ShardGradients> {
  const n = shard.labels.length;
  const { value, grads } = tf.tidy(() => {
    const x = tf.tensor4d(shard.x, [n, shard.size, shard.size, 3]);
    const y = tf.oneHot(tf.tensor1d(shard.labels, 'int32'), numClasses);
    const w = shard.sampleWeights ? tf.tensor1d(shard.sampleWeights) : undefined;
    return tf.variableGrads(() => tf.losses.softmaxCrossEntropy(y, model.apply(x, { training: true }) as tf.Tensor, w, undefined, tf.Reduction.SUM) as tf.Scalar, vars);
  });
  const ordered = vars.map((v) => grads[v.name]!);
  const [loss, ...arrays] = await Promise.all([value.data(), ...ordered.map((g) => g.data() as Promise<Float32Array>)]);
  tf.dispose([value, ...ordered]);
  return { lossSum: loss![0]!, grads: arrays as Float32Array[] };
}
