import { buildModel, createRng, tf, type PresetName, type Logger } from '@camflow/common';

/** Images at the model's input size, packed: `n × size × size × 3` bytes, with integer labels. */
export interface TensorData {
  images: Uint8Array;
  labels: Int32Array;
  size: number;
}

export interface EpochMetrics {
  epoch: number;
  loss: number;
  valLoss: number;
  valAccuracy: number;
  /** Share of validation images predicted as the most predicted class (1 = constant predictions). */
  dominantShare: number;
  /** Mean activation of the last conv layer on validation images (0 = dead ReLU head). */
  featureMean: number;
  seconds: number;
}

export interface FitParams {
  preset: PresetName;
  numClasses: number;
  epochs: number;
  batchSize: number;
  learningRate: number;
  seed: number;
  maxRestarts: number;
  /** Epochs without learning after which a run counts as collapsed. */
  patience?: number;
}

export interface FitResult {
  model: tf.LayersModel;
  history: EpochMetrics[];
  attempts: number;
  collapsed: boolean;
  collapseReason?: string;
}

const count = (d: TensorData) => d.labels.length;

/** Float batch tensor in [0, 1] from packed bytes, with optional flips (cells have no orientation). */
function batchTensor(data: TensorData, indices: ArrayLike<number>, flip: { h: boolean; v: boolean } | null): tf.Tensor4D {
  const per = data.size * data.size * 3;
  const buf = new Float32Array(indices.length * per);
  for (let i = 0; i < indices.length; i++) {
    const src = indices[i]! * per;
    const dst = i * per;
    for (let j = 0; j < per; j++) buf[dst + j] = data.images[src + j]! / 255;
  }
  let x = tf.tensor4d(buf, [indices.length, data.size, data.size, 3]);
  if (flip && (flip.h || flip.v)) {
    const axes = [...(flip.v ? [1] : []), ...(flip.h ? [2] : [])];
    const flipped = tf.reverse(x, axes);
    x.dispose();
    x = flipped as tf.Tensor4D;
  }
  return x;
}

const yieldToEventLoop = () => new Promise<void>((resolve) => setImmediate(resolve));

/** Evaluate: loss, accuracy, prediction spread, and feature liveness. */
export async function evaluate(model: tf.LayersModel, data: TensorData, numClasses: number, batchSize = 64): Promise<Omit<EpochMetrics, 'epoch' | 'loss' | 'seconds'>> {
  const n = count(data);
  const predicted = new Array<number>(numClasses).fill(0);
  let lossSum = 0;
  let correct = 0;
  let featureSum = 0;
  let featureCount = 0;
  const features = model.getLayer('features');
  const probe = tf.model({ inputs: model.inputs, outputs: [features.output as tf.SymbolicTensor, model.outputs[0]!] });
  for (let start = 0; start < n; start += batchSize) {
    const idx = Array.from({ length: Math.min(batchSize, n - start) }, (_, i) => start + i);
    tf.tidy(() => {
      const x = batchTensor(data, idx, null);
      const [f, logits] = probe.predict(x) as tf.Tensor[];
      const y = tf.oneHot(tf.tensor1d(idx.map((i) => data.labels[i]!), 'int32'), numClasses);
      lossSum += tf.losses.softmaxCrossEntropy(y, logits!, undefined, undefined, tf.Reduction.SUM).dataSync()[0]!;
      const pred = tf.argMax(logits!, 1).dataSync();
      pred.forEach((p, i) => {
        predicted[p]!++;
        if (p === data.labels[idx[i]!]) correct++;
      });
      featureSum += tf.sum(f!).dataSync()[0]!;
      featureCount += f!.size;
    });
    await yieldToEventLoop();
  }
  return {
    valLoss: lossSum / n,
    valAccuracy: correct / n,
    dominantShare: Math.max(...predicted) / n,
    featureMean: featureSum / featureCount,
  };
}

/**
 * Why a run has collapsed, or undefined when it is learning. The majority-class rate is "chance"; `chanceLoss`
 * is the cross-entropy of a uniform guess, ln(classes). Accuracy at chance alone is not collapse (a model that
 * learns can still generalise badly to new patients early on): it counts only while the training loss is stuck
 * at the uniform guess too.
 */
export function collapseReason(m: EpochMetrics, majorityRate: number, chanceLoss = Math.log(2)): string | undefined {
  if (!(m.featureMean > 1e-7)) return `last conv features are all zero (dead ReLU head) at epoch ${m.epoch}`;
  if (!Number.isFinite(m.loss) || !Number.isFinite(m.valLoss)) return `loss is not finite at epoch ${m.epoch}`;
  if (m.dominantShare >= 0.999) return `constant predictions at epoch ${m.epoch}`;
  if (m.valAccuracy <= majorityRate + 0.01 && m.loss >= 0.97 * chanceLoss) {
    return `training loss ${m.loss.toFixed(3)} stuck at chance (${chanceLoss.toFixed(3)}) and validation accuracy ${m.valAccuracy.toFixed(3)} at the majority rate at epoch ${m.epoch}`;
  }
  return undefined;
}

/** Where a run stands after an epoch: enough to resume it after a crash. */
export interface FitCheckpoint {
  attempt: number;
  epoch: number;
  history: EpochMetrics[];
  weights: tf.Tensor[];
}

export interface FitHooks {
  onEpoch?: (m: EpochMetrics, attempt: number) => void | Promise<void>;
  /** Called after every epoch with the weights; persist it to resume a crashed run. */
  checkpoint?: (c: FitCheckpoint) => Promise<void>;
  /** A checkpoint to resume from (same params). */
  resume?: FitCheckpoint;
  log?: Logger;
}

/**
 * Fit the GAP-CNN with Adam and softmax cross-entropy, as the seed. A collapsed run (dead features, constant
 * predictions, chance accuracy after `patience` epochs) restarts with a fresh initialisation, at most
 * `maxRestarts` times; if the last attempt collapses too, the result says so and the caller must not promote it.
 *
 * Shuffling and flips draw from a generator seeded per (attempt, epoch), so a run resumed from a checkpoint
 * sees the same batches as one that never stopped (Adam's moment estimates restart from zero).
 */
export async function fitWithRestarts(params: FitParams, train: TensorData, validation: TensorData, hooks: FitHooks = {}): Promise<FitResult> {
  const { log } = hooks;
  const patience = params.patience ?? 2;
  const labelsCount = new Array<number>(params.numClasses).fill(0);
  validation.labels.forEach((l) => labelsCount[l]!++);
  const majorityRate = Math.max(...labelsCount) / Math.max(1, count(validation));
  let lastReason: string | undefined;
  const resume = hooks.resume;
  for (let attempt = resume?.attempt ?? 0; attempt <= params.maxRestarts; attempt++) {
    const seed = params.seed + attempt * 7919;
    const model = buildModel(params.preset, params.numClasses, seed);
    const resuming = resume !== undefined && attempt === resume.attempt;
    if (resuming) model.setWeights(resume.weights);
    const optimizer = tf.train.adam(params.learningRate);
    const vars = model.trainableWeights.map((w) => w.read() as tf.Variable);
    const history: EpochMetrics[] = resuming ? [...resume.history] : [];
    let collapsed: string | undefined;
    for (let epoch = resuming ? resume.epoch + 1 : 1; epoch <= params.epochs; epoch++) {
      const started = performance.now();
      const rng = createRng(seed * 1009 + epoch);
      const order = rng.shuffle(Array.from({ length: count(train) }, (_, i) => i));
      let lossSum = 0;
      for (let start = 0; start < order.length; start += params.batchSize) {
        const idx = order.slice(start, start + params.batchSize);
        const flip = { h: rng.next() < 0.5, v: rng.next() < 0.5 };
        const loss = tf.tidy(() => {
          const x = batchTensor(train, idx, flip);
          const y = tf.oneHot(tf.tensor1d(idx.map((i) => train.labels[i]!), 'int32'), params.numClasses);
          const cost = optimizer.minimize(() => tf.losses.softmaxCrossEntropy(y, model.apply(x, { training: true }) as tf.Tensor) as tf.Scalar, true, vars);
          return cost!;
        });
        lossSum += (await loss.data())[0]! * idx.length;
        loss.dispose();
        // A macrotask turn per step: BullMQ renews the job lock on a timer, which a tight loop would starve.
        await yieldToEventLoop();
      }
      const metrics: EpochMetrics = {
        epoch,
        loss: lossSum / count(train),
        ...(await evaluate(model, validation, params.numClasses)),
        seconds: (performance.now() - started) / 1000,
      };
      history.push(metrics);
      await hooks.onEpoch?.(metrics, attempt);
      const reason = collapseReason(metrics, majorityRate, Math.log(params.numClasses));
      // Dead features never recover (no gradient flows); other signals get `patience` epochs.
      if (reason && (metrics.featureMean <= 1e-7 || epoch >= patience)) {
        collapsed = reason;
        break;
      }
      await hooks.checkpoint?.({ attempt, epoch, history, weights: model.getWeights() });
    }
    optimizer.dispose();
    if (!collapsed) return { model, history, attempts: attempt + 1, collapsed: false };
    lastReason = collapsed;
    log?.warn({ attempt, reason: collapsed }, 'training run collapsed; restarting with a new initialisation');
    if (attempt === params.maxRestarts) return { model, history, attempts: attempt + 1, collapsed: true, collapseReason: lastReason };
    model.dispose();
  }
  throw new Error('unreachable');
}
