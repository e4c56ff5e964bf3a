import { buildModel, createRng, tf, type PresetName, type Logger } from '@camflow/common';
import { shardRanges } from './parallel.js';
import type { GradientEngine } from './ort-gradients.js';
import type { Shard } from './gradient-step.js';

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
  /**
   * Epochs without learning after which a run counts as collapsed; never before `MIN_STEPS_BEFORE_COLLAPSE`
   * optimizer steps have run (dead features: at once).
   */
  patience?: number;
  /** Epochs without a lower validation loss before stopping (default: never stop early). */
  earlyStopPatience?: number;
  /** Halve the learning rate after this many epochs without a lower validation loss (0 or absent: constant). */
  lrPlateauPatience?: number;
  /** Flips, 90° rotations, brightness and stain jitter per training image (seeded). */
  augment?: boolean;
  /** Balance the classes' losses when the training labels are unbalanced. */
  classWeights?: boolean;
  /**
   * In-process steps whose losses are read back together (default `LOSS_READ_EVERY`): a GPU backend waits for
   * each read-back, so reading every step leaves the GPU idle between steps. The losses, and so the history, are
   * the same whatever the interval.
   */
  lossReadEvery?: number;
}

/**
 * Steps between loss read-backs of in-process training: on an H200 (`npm run bench:gpu`), reading once per 8 seed
 * steps instead of every step took b32 from 377 to 795 images/s and b256 from 2,283 to 2,406.
 */
export const LOSS_READ_EVERY = 8;

export interface FitResult {
  /** The model at its best epoch (lowest validation loss). */
  model: tf.LayersModel;
  /** Every epoch that ran; `bestEpoch` is the one whose weights `model` holds. */
  history: EpochMetrics[];
  bestEpoch: number;
  attempts: number;
  collapsed: boolean;
  collapseReason?: string;
}

const count = (d: TensorData) => d.labels.length;

/**
 * Optimizer steps a run gets before "stuck at chance" counts as a collapse. Small nets leave the uniform guess
 * within an epoch, but the seed's net (a 2-channel ReLU head) sits at chance for 200–300 steps before it learns:
 * on the 1,691 training cells of the NIH dev set, 53 steps an epoch, two epochs of patience restarted every run
 * that would have learnt. The seed itself saw 768 steps in its first epoch.
 */
export const MIN_STEPS_BEFORE_COLLAPSE = 600;

/** Pure: the most frequent label and its share of `labels` (the accuracy of always answering it). */
export function majorityClass(labels: ArrayLike<number>, classes: number): { label: number; share: number } {
  const counts = new Array<number>(classes).fill(0);
  for (let i = 0; i < labels.length; i++) counts[labels[i]!]!++;
  const label = counts.indexOf(Math.max(...counts));
  return { label, share: counts[label]! / Math.max(1, labels.length) };
}

/**
 * Pure: why a model does not yet tell the classes apart, or undefined when it does. Not learnt: no more accurate than
 * always answering the majority class **and** a balanced accuracy (the mean of the per-class recalls) within 0.1 of
 * chance (1 / classes). Both, so that a good model on very unbalanced cells (99 % one class: accuracy cannot beat
 * the share by much) and a class-weighted screen (accuracy traded for recall) are never taken for one that learnt
 * nothing.
 * @example notLearntReason([0, 0, 1], [0, 0, 0], ['Parasitized', 'Uninfected'], 10) // "… no better than always answering Parasitized …"
 */
export function notLearntReason(labels: ArrayLike<number>, predicted: ArrayLike<number>, classNames: readonly string[], steps: number): string | undefined {
  const k = classNames.length;
  const { accuracy, balanced, majority } = classificationScores(labels, predicted, k);
  if (accuracy > majority.share + 0.01 || balanced > 1 / k + 0.1) return undefined;
  return `validation accuracy ${accuracy.toFixed(4)} is no better than always answering ${classNames[majority.label]} (${majority.share.toFixed(4)} of the ${labels.length} validation images), balanced accuracy ${balanced.toFixed(4)} (chance ${(1 / k).toFixed(2)}): it does not yet tell the classes apart (${steps} optimizer steps); train for more epochs or on more images`;
}

/**
 * Pure: a warning for a model that tells the classes apart (not `notLearntReason`'s case) yet is no more accurate than
 * always answering the majority class — published and promotable, but a user should see the baseline it misses.
 * @example belowMajorityWarning([0, 0, 0, 1], [0, 1, 1, 1], ['Parasitized', 'Uninfected']) // "validation accuracy 0.5000 is below …"
 */
export function belowMajorityWarning(labels: ArrayLike<number>, predicted: ArrayLike<number>, classNames: readonly string[]): string | undefined {
  const k = classNames.length;
  const { accuracy, balanced, majority } = classificationScores(labels, predicted, k);
  if (accuracy > majority.share + 0.01 || balanced <= 1 / k + 0.1) return undefined;
  return `validation accuracy ${accuracy.toFixed(4)} is ${accuracy < majority.share ? 'below' : 'no better than'} always answering ${classNames[majority.label]} (${majority.share.toFixed(4)} of the ${labels.length} validation images); balanced accuracy ${balanced.toFixed(4)} (chance ${(1 / k).toFixed(2)}): it tells the classes apart only partly — train for more epochs or on more images, unless it trades accuracy for the recall of a class on purpose`;
}

/** Pure: accuracy, balanced accuracy (mean recall of the classes present) and the majority class of `labels`. */
function classificationScores(labels: ArrayLike<number>, predicted: ArrayLike<number>, k: number): { accuracy: number; balanced: number; majority: { label: number; share: number } } {
  const majority = majorityClass(labels, k);
  let right = 0;
  const seen = new Array<number>(k).fill(0);
  const hit = new Array<number>(k).fill(0);
  for (let i = 0; i < labels.length; i++) {
    seen[labels[i]!]!++;
    if (predicted[i] === labels[i]) {
      right++;
      hit[labels[i]!]!++;
    }
  }
  const present = seen.map((n, c) => (n > 0 ? hit[c]! / n : undefined)).filter((r): r is number => r !== undefined);
  return { accuracy: right / Math.max(1, labels.length), balanced: present.reduce((a, b) => a + b, 0) / Math.max(1, present.length), majority };
}

/** The epoch from which a run at chance counts as collapsed: `patience` epochs, and enough steps. */
export function collapseEpoch(patience: number, trainCount: number, batchSize: number): number {
  return Math.max(patience, Math.ceil(MIN_STEPS_BEFORE_COLLAPSE / Math.max(1, Math.ceil(trainCount / batchSize))));
}

/** Whether an epoch's training loss is still at the uniform guess (the run has not started learning). */
export function atChance(loss: number, chanceLoss: number): boolean {
  return loss >= 0.97 * chanceLoss;
}

/**
 * One training image's augmentation: a dihedral transform (cells have no orientation), a small zoom and shift (a
 * cell's crop is not always centred or of the same margin: field crops, other labs' croppers), and colour gains.
 */
export interface Augmentation {
  /** 0–7: rotation by `k × 90°` (k = t & 3), mirrored when t ≥ 4. */
  transform: number;
  /** Zoom about the centre (> 1: larger), ~[0.9, 1.1]. */
  scale: number;
  /** Shift in pixels as a fraction of the side, each ~[−0.05, 0.05]. */
  shift: [number, number];
  /** Multiplicative gain per channel (brightness × stain), ~[0.8, 1.2]. */
  gains: [number, number, number];
}

/** Draw one image's augmentation from a seeded generator. */
export function drawAugmentation(rng: { next(): number }): Augmentation {
  const brightness = 0.85 + 0.3 * rng.next();
  const stain = () => 0.93 + 0.14 * rng.next();
  const transform = Math.floor(rng.next() * 8);
  const scale = 0.9 + 0.2 * rng.next();
  const shift: [number, number] = [0.1 * rng.next() - 0.05, 0.1 * rng.next() - 0.05];
  return { transform, scale, shift, gains: [brightness * stain(), brightness * stain(), brightness * stain()] };
}

/**
 * Copy one packed `size × size × 3` image into `out` (as floats in [0, 1]) under a dihedral transform, a zoom and
 * shift (bilinear; what comes in from outside the crop is black, as around every crop), and colour gains. Gains are
 * multiplicative, so the black background stays black, as the serving inputs have it. An identity augmentation
 * (transform 0, scale 1, no shift, unit gains) copies the image exactly.
 */
export function augmentInto(src: Uint8Array, srcOffset: number, size: number, aug: Augmentation | null, out: Float32Array, outOffset: number): void {
  if (!aug) {
    // Evaluation and prediction (every epoch, every image): a plain copy.
    const n = size * size * 3;
    for (let j = 0; j < n; j++) out[outOffset + j] = src[srcOffset + j]! / 255;
    return;
  }
  const t = aug.transform;
  const [gr, gg, gb] = aug.gains;
  const mirror = t >= 4;
  const k = t & 3;
  const last = size - 1;
  const centre = last / 2;
  const inv = 1 / aug.scale;
  const dx = aug.shift[0] * size;
  const dy = aug.shift[1] * size;
  const at = (x: number, y: number, c: number) => (x < 0 || y < 0 || x > last || y > last ? 0 : src[srcOffset + (y * size + x) * 3 + c]!);
  for (let y = 0; y < size; y++) {
    for (let x = 0; x < size; x++) {
      // Source point of output (x, y): inverse rotation by k × 90°, then the mirror, then the inverse zoom and shift.
      let sx = x;
      let sy = y;
      if (k === 1) [sx, sy] = [y, last - x];
      else if (k === 2) [sx, sy] = [last - x, last - y];
      else if (k === 3) [sx, sy] = [last - y, x];
      if (mirror) sx = last - sx;
      const fx = centre + (sx - centre - dx) * inv;
      const fy = centre + (sy - centre - dy) * inv;
      const x0 = Math.floor(fx);
      const y0 = Math.floor(fy);
      const ax = fx - x0;
      const ay = fy - y0;
      const o = outOffset + (y * size + x) * 3;
      for (let c = 0; c < 3; c++) {
        const v = (1 - ay) * ((1 - ax) * at(x0, y0, c) + ax * at(x0 + 1, y0, c)) + ay * ((1 - ax) * at(x0, y0 + 1, c) + ax * at(x0 + 1, y0 + 1, c));
        out[o + c] = Math.min(1, (v / 255) * (c === 0 ? gr : c === 1 ? gg : gb));
      }
    }
  }
}

/** Float batch tensor in [0, 1] from packed bytes, each image with its augmentation (or none). */
function batchTensor(data: TensorData, indices: ArrayLike<number>, augmentations: (Augmentation | null)[] | null): tf.Tensor4D {
  const per = data.size * data.size * 3;
  const buf = new Float32Array(indices.length * per);
  for (let i = 0; i < indices.length; i++) augmentInto(data.images, indices[i]! * per, data.size, augmentations?.[i] ?? null, buf, i * per);
  return tf.tensor4d(buf, [indices.length, data.size, data.size, 3]);
}

/** One data-parallel shard: the images augmented into floats, their labels and loss weights. */
function shardOf(data: TensorData, indices: number[], augmentations: (Augmentation | null)[] | null, classWeights: number[] | undefined): Shard {
  const per = data.size * data.size * 3;
  const x = new Float32Array(indices.length * per);
  for (let i = 0; i < indices.length; i++) augmentInto(data.images, indices[i]! * per, data.size, augmentations?.[i] ?? null, x, i * per);
  const labels = Int32Array.from(indices, (i) => data.labels[i]!);
  return { x, size: data.size, labels, sampleWeights: classWeights ? Float32Array.from(labels, (l) => classWeights[l]!) : undefined };
}

/** Per-class loss weights n / (classes × n_class), or undefined when the classes are balanced (within 10 %). */
export function classWeightsFor(labels: ArrayLike<number>, numClasses: number): number[] | undefined {
  const counts = new Array<number>(numClasses).fill(0);
  for (let i = 0; i < labels.length; i++) counts[labels[i]!]!++;
  const min = Math.min(...counts);
  const max = Math.max(...counts);
  if (min === 0 || max / min <= 1.1) return undefined;
  return counts.map((c) => labels.length / (numClasses * c));
}

const yieldToEventLoop = () => new Promise<void>((resolve) => setImmediate(resolve));

/** Softmax probabilities of every image, `n × classes`, row by row. */
export async function predictProbabilities(model: tf.LayersModel, data: TensorData, batchSize = 64): Promise<Float32Array[]> {
  const out: Float32Array[] = [];
  for (let start = 0; start < count(data); start += batchSize) {
    const idx = Array.from({ length: Math.min(batchSize, count(data) - start) }, (_, i) => start + i);
    const probs = tf.tidy(() => tf.softmax(model.predict(batchTensor(data, idx, null)) as tf.Tensor2D));
    const values = (await probs.data()) as Float32Array;
    const k = probs.shape[1]!;
    probs.dispose();
    for (let i = 0; i < idx.length; i++) out.push(values.slice(i * k, (i + 1) * k));
    await yieldToEventLoop();
  }
  return out;
}

/**
 * The share of the last conv layer's channels that are zero on every one of the first `n` images: channels a ReLU
 * holds shut there get no gradient and rarely open again. The seed's 2-channel head starts with one or both dead
 * in about half of PyTorch-style initialisations.
 */
export async function deadFeatureShare(model: tf.LayersModel, data: TensorData, n = 64): Promise<number> {
  const idx = Array.from({ length: Math.min(n, count(data)) }, (_, i) => i);
  if (idx.length === 0) return 0;
  const probe = tf.model({ inputs: model.inputs, outputs: model.getLayer('features').output as tf.SymbolicTensor });
  const maxes = tf.tidy(() => {
    const f = probe.predict(batchTensor(data, idx, null)) as tf.Tensor4D;
    return f.max([0, 1, 2]);
  });
  const values = await maxes.data();
  maxes.dispose();
  return values.filter((v) => !(v > 0)).length / values.length;
}

/** Initialisations tried per attempt before training starts with dead channels anyway. */
const INIT_DRAWS = 20;
/** Above this share of dead feature channels an initialisation is drawn again. */
const MAX_DEAD_SHARE = 0.25;

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
    // Asynchronous reads: the webgpu backend has no synchronous read in Node.
    const [loss, pred, fsum, size] = tf.tidy(() => {
      const x = batchTensor(data, idx, null);
      const [f, logits] = probe.predict(x) as tf.Tensor[];
      const y = tf.oneHot(tf.tensor1d(idx.map((i) => data.labels[i]!), 'int32'), numClasses);
      return [tf.losses.softmaxCrossEntropy(y, logits!, undefined, undefined, tf.Reduction.SUM), tf.argMax(logits!, 1), tf.sum(f!), f!.size] as const;
    });
    const [lossValue, predValues, fsumValue] = await Promise.all([loss.data(), pred.data(), fsum.data()]);
    tf.dispose([loss, pred, fsum]);
    lossSum += lossValue[0]!;
    predValues.forEach((p: number, i: number) => {
      predicted[p]!++;
      if (p === data.labels[idx[i]!]) correct++;
    });
    featureSum += fsumValue[0]!;
    featureCount += size;
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
  if (m.valAccuracy <= majorityRate + 0.01 && atChance(m.loss, chanceLoss)) {
    return `training loss ${m.loss.toFixed(3)} stuck at chance (${chanceLoss.toFixed(3)}) and validation accuracy ${m.valAccuracy.toFixed(3)} not above the majority class's share (${majorityRate.toFixed(3)}) at epoch ${m.epoch}`;
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
  /** A collapsed attempt (0-based) about to be restarted with a new initialisation, and why it collapsed. */
  onRestart?: (attempt: number, reason: string) => void | Promise<void>;
  /** Called after every epoch with the weights; persist it to resume a crashed run. */
  checkpoint?: (c: FitCheckpoint) => Promise<void>;
  /** A checkpoint to resume from (same params). */
  resume?: FitCheckpoint;
  log?: Logger;
  /** Who computes the gradients on the CPU backends: the data-parallel pool (`parallel.ts`) or ONNX Runtime (`ort-gradients.ts`); absent: tfjs on this thread. */
  pool?: GradientEngine;
  /** Asked every few steps and after every epoch; when it says yes the run stops with `FitCancelled`. */
  cancelled?: () => Promise<boolean>;
}

/** A run stopped on request (`camflow train --cancel`): nothing is published. */
export class FitCancelled extends Error {
  constructor(readonly epoch: number) {
    super(`training cancelled by the operator during epoch ${epoch}`);
  }
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
  const patience = collapseEpoch(params.patience ?? 2, count(train), params.batchSize);
  const weights = params.classWeights ? classWeightsFor(train.labels, params.numClasses) : undefined;
  if (weights) log?.info({ classWeights: weights }, 'unbalanced classes: weighting the loss');
  const majorityRate = majorityClass(validation.labels, params.numClasses).share;
  let lastReason: string | undefined;
  const resume = hooks.resume;
  for (let attempt = resume?.attempt ?? 0; attempt <= params.maxRestarts; attempt++) {
    const seed = params.seed + attempt * 7919;
    const resuming = resume !== undefined && attempt === resume.attempt;
    let model = buildModel(params.preset, params.numClasses, seed);
    if (resuming) {
      model.setWeights(resume.weights);
    } else {
      // An initialisation whose ReLU head is mostly shut on the training images is drawn again (seeded, so a
      // run draws the same ones): cheaper than an epoch spent learning nothing and a restart.
      for (let draw = 1; draw < INIT_DRAWS; draw++) {
        const dead = await deadFeatureShare(model, train);
        if (dead <= MAX_DEAD_SHARE) break;
        log?.info({ attempt, draw, deadFeatureShare: dead }, 'dead feature channels at initialisation: drawing it again');
        model.dispose();
        model = buildModel(params.preset, params.numClasses, seed + draw * 104_729);
      }
    }
    const optimizer = tf.train.adam(params.learningRate);
    const vars = model.trainableWeights.map((w) => w.read() as tf.Variable);
    const history: EpochMetrics[] = resuming ? [...resume.history] : [];
    let collapsed: string | undefined;
    // The best epoch by validation loss, and a copy of its weights: it is what gets published.
    let best: { epoch: number; valLoss: number; weights: tf.Tensor[] } | undefined;
    let sinceDrop = 0;
    let lastImprovement = resuming ? resume.epoch : 0;
    const keepBest = (epoch: number, valLoss: number) => {
      tf.dispose(best?.weights ?? []);
      best = { epoch, valLoss, weights: model.getWeights().map((w) => w.clone()) };
    };
    // Asked every ten steps and after every epoch: a cancelled run frees what it holds and stops.
    const stopIfCancelled = async (epoch: number) => {
      if (!hooks.cancelled || !(await hooks.cancelled())) return;
      optimizer.dispose();
      tf.dispose(best?.weights ?? []);
      model.dispose();
      throw new FitCancelled(epoch);
    };
    if (resuming && resume.history.length > 0) {
      // The best weights before the crash are not checkpointed: the resumed weights stand in for them.
      keepBest(resume.epoch, Math.min(...resume.history.map((h) => h.valLoss)));
    }
    for (let epoch = resuming ? resume.epoch + 1 : 1; epoch <= params.epochs; epoch++) {
      const started = performance.now();
      const rng = createRng(seed * 1009 + epoch);
      const order = rng.shuffle(Array.from({ length: count(train) }, (_, i) => i));
      let lossSum = 0;
      // In-process steps' losses (each a scalar tensor, mean over its batch, with the batch's size) not yet read.
      const unread: { loss: tf.Tensor; images: number }[] = [];
      const readLosses = async () => {
        if (unread.length === 0) return;
        const stacked = tf.stack(unread.map((u) => u.loss));
        const values = await stacked.data().finally(() => tf.dispose([stacked, ...unread.map((u) => u.loss)]));
        // Summed in JS in step order, as reading each step did: the same epoch loss whatever the interval.
        for (const [i, u] of unread.entries()) lossSum += values[i]! * u.images;
        unread.length = 0;
      };
      for (let start = 0; start < order.length; start += params.batchSize) {
        const idx = order.slice(start, start + params.batchSize);
        const augmentations = params.augment ? idx.map(() => drawAugmentation(rng)) : null;
        if (hooks.pool) {
          // The gradient engine (shards on every core, or ONNX Runtime); one optimizer step on the summed gradients (the same step as below).
          const shards = shardRanges(idx.length, hooks.pool.shards).map(({ start, end }) => shardOf(train, idx.slice(start, end), augmentations?.slice(start, end) ?? null, weights));
          const { lossSum: batchLoss, grads } = await hooks.pool.gradients(model, vars, shards, params.numClasses);
          optimizer.applyGradients(grads as Record<string, tf.Variable>);
          tf.dispose(Object.values(grads));
          lossSum += batchLoss;
        } else {
          const loss = tf.tidy(() => {
            const x = batchTensor(train, idx, augmentations);
            const y = tf.oneHot(tf.tensor1d(idx.map((i) => train.labels[i]!), 'int32'), params.numClasses);
            const w = weights ? tf.tensor1d(idx.map((i) => weights[train.labels[i]!]!)) : undefined;
            const cost = optimizer.minimize(() => tf.losses.softmaxCrossEntropy(y, model.apply(x, { training: true }) as tf.Tensor, w) as tf.Scalar, true, vars);
            return cost!;
          });
          unread.push({ loss, images: idx.length });
          if (unread.length >= (params.lossReadEvery ?? LOSS_READ_EVERY)) await readLosses();
        }
        // A macrotask turn per step: BullMQ renews the job lock on a timer, which a tight loop would starve.
        await yieldToEventLoop();
        if ((start / params.batchSize) % 10 === 9) {
          await readLosses();
          await stopIfCancelled(epoch);
        }
      }
      await readLosses();
      const metrics: EpochMetrics = {
        epoch,
        loss: lossSum / count(train),
        ...(await evaluate(model, validation, params.numClasses)),
        seconds: (performance.now() - started) / 1000,
      };
      history.push(metrics);
      await hooks.onEpoch?.(metrics, attempt);
      await stopIfCancelled(epoch);
      const reason = collapseReason(metrics, majorityRate, Math.log(params.numClasses));
      // Dead features and a non-finite loss never recover; other signals get `patience` epochs and enough steps,
      // but no later than the last epoch (a run that ends at chance is not published).
      const hopeless = metrics.featureMean <= 1e-7 || !Number.isFinite(metrics.loss) || !Number.isFinite(metrics.valLoss);
      if (reason && (hopeless || epoch >= patience || (epoch === params.epochs && epoch >= (params.patience ?? 2)))) {
        collapsed = reason;
        break;
      }
      // The best weights follow any lower loss; the patience counters only a real improvement (≥ 0.001), so a loss
      // creeping down by 1e-4 per epoch neither halts the rate schedule nor postpones the stop forever.
      // A run still at the uniform guess has not started to learn: its validation loss wanders around ln(classes),
      // and neither the rate schedule nor the early stop should read that as a plateau.
      const improved = !best || metrics.valLoss < best.valLoss - 1e-3 || atChance(metrics.loss, Math.log(params.numClasses));
      if (improved) lastImprovement = epoch;
      if (!best || metrics.valLoss < best.valLoss) keepBest(epoch, metrics.valLoss);
      if (improved) {
        sinceDrop = 0;
      } else if (params.lrPlateauPatience && ++sinceDrop >= params.lrPlateauPatience) {
        // Reduce on plateau: Adam's rate is a plain field, read at every step.
        const opt = optimizer as unknown as { learningRate: number };
        opt.learningRate /= 2;
        sinceDrop = 0;
        log?.info({ epoch, learningRate: opt.learningRate }, 'validation loss on a plateau: learning rate halved');
      }
      await hooks.checkpoint?.({ attempt, epoch, history, weights: model.getWeights() });
      if (params.earlyStopPatience && best && epoch - lastImprovement >= params.earlyStopPatience) {
        log?.info({ epoch, bestEpoch: best.epoch }, `early stop: validation loss not 0.001 lower for ${params.earlyStopPatience} epochs`);
        break;
      }
    }
    optimizer.dispose();
    if (!collapsed) {
      // Publish the best epoch, not the last.
      if (best) {
        model.setWeights(best.weights);
        tf.dispose(best.weights);
      }
      return { model, history, bestEpoch: best?.epoch ?? history.length, attempts: attempt + 1, collapsed: false };
    }
    tf.dispose(best?.weights ?? []);
    lastReason = collapsed;
    log?.warn({ attempt, reason: collapsed }, 'training run collapsed; restarting with a new initialisation');
    if (attempt === params.maxRestarts) return { model, history, bestEpoch: history.length, attempts: attempt + 1, collapsed: true, collapseReason: lastReason };
    await hooks.onRestart?.(attempt, collapsed);
    model.dispose();
  }
  throw new Error('unreachable');
}
