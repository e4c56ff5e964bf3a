import onnxProto from 'onnx-proto';
import type * as tf from '@tensorflow/tfjs';
import { CamflowError } from '../errors.js';

const { onnx } = onnxProto;

const FLOAT = 1;
const INT64 = 7;
const ATTR_INT = 2;
const ATTR_INTS = 7;

/** Graph names of the gradient graph's inputs and outputs (see `exportGradientGraph`). */
export const GRAD_INPUT = 'x';
export const GRAD_LABELS = 'y';
export const GRAD_SAMPLE_WEIGHTS = 'sample_weights';
export const GRAD_LOSS = 'loss_sum';
/** The k-th trainable variable (in `model.trainableWeights` order) is fed as `weight:k`; its gradient is `grad:k`. */
export const gradWeightName = (k: number) => `weight:${k}`;
export const gradOutputName = (k: number) => `grad:${k}`;

type Attr = { name: string; ints?: number[]; i?: number };
const attribute = (a: Attr) => (a.ints ? { name: a.name, type: ATTR_INTS, ints: a.ints } : { name: a.name, type: ATTR_INT, i: a.i ?? 0 });

/**
 * One training step's forward and backward pass of a camflow GAP-CNN as an ONNX graph, so that ONNX Runtime's CPU
 * kernels (MLAS, every core) compute the gradients instead of tfjs's one-thread wasm kernels. Inputs: `x` float
 * `[N, S, S, 3]` in [0, 1] (augmented as for tfjs), `y` one-hot float `[N, classes]`, `sample_weights` float `[N]`,
 * and every trainable variable as `weight:k` in its tfjs layout. Outputs: `loss_sum` — Σ wᵢ·CE(yᵢ, logitsᵢ), the
 * same number as `tf.losses.softmaxCrossEntropy(y, logits, w, …, SUM)` — and `grad:k`, its gradient with respect to
 * `weight:k`, in the same layout.
 *
 * The backward pass is written out layer by layer, in NCHW:
 * - softmax cross-entropy: ∂L/∂logits = w·(softmax − y); dense: ∂W = fᵀ·g, ∂b = Σ g, ∂f = g·Wᵀ;
 * - global average pooling: ∂ spread evenly over the map (Expand);
 * - ReLU: ∂ where the pre-activation is > 0 (as tfjs's step);
 * - max pooling (2×2, stride 2): ∂ spread over each window and kept where the input equals the window's max;
 * - convolution (stride 1): ∂W[o, i] = Σₙ in[n, i] ⋆ ∂z[n, o] — itself a convolution, with the batch as channels
 *   (input `[Ci, N, H, W]`, kernel `[Co, N, Ho, Wo]`, the forward's padding); ∂b = Σ ∂z; ∂in = ConvTranspose(∂z, W).
 * Layers supported: Rescaling, Conv2D (ReLU, stride 1, 'same' with an odd kernel or 'valid'), MaxPooling2D (2×2,
 * stride 2, 'valid'), GlobalAveragePooling2D, Dense (no activation) — the presets' layers; anything else fails.
 * @example const bytes = exportGradientGraph(buildModel('fast', 2));
 */
export function exportGradientGraph(model: tf.LayersModel): Uint8Array {
  const nodes: ReturnType<typeof onnx.NodeProto.create>[] = [];
  const initializers: ReturnType<typeof onnx.TensorProto.create>[] = [];
  let counter = 0;
  const fresh = (base: string) => `${base}_${counter++}`;
  const node = (opType: string, inputs: string[], attrs: Attr[] = [], outputs = [fresh(opType.toLowerCase())]) => {
    nodes.push(onnx.NodeProto.create({ opType, input: inputs, output: outputs, name: outputs[0]!, attribute: attrs.map(attribute) }));
    return outputs[0]!;
  };
  const floats = (values: number[], dims: number[] = []) => {
    const name = fresh('const');
    const data = Float32Array.from(values);
    initializers.push(onnx.TensorProto.create({ name, dims, dataType: FLOAT, rawData: new Uint8Array(data.buffer) }));
    return name;
  };
  const int64s = (values: number[]) => {
    const name = fresh('axes');
    const data = BigInt64Array.from(values.map(BigInt));
    initializers.push(onnx.TensorProto.create({ name, dims: [values.length], dataType: INT64, rawData: new Uint8Array(data.buffer) }));
    return name;
  };
  const transpose = (x: string, perm: number[]) => node('Transpose', [x], [{ name: 'perm', ints: perm }]);
  const reduceSum = (x: string, axes: number[], keepdims = 0) => node('ReduceSum', [x, int64s(axes)], [{ name: 'keepdims', i: keepdims }]);

  // Which `weight:k` each layer's kernel and bias are.
  const index = new Map<string, number>(model.trainableWeights.map((w, k) => [w.name, k]));
  const weightOf = (layer: tf.layers.Layer, which: number) => {
    const w = layer.trainableWeights[which];
    const k = w ? index.get(w.name) : undefined;
    if (k === undefined) throw new CamflowError('ONNX_EXPORT', `layer ${layer.name} has no trainable weight ${which}`);
    return k;
  };

  type Step =
    | { kind: 'conv'; input: string; z: string; weight: string; kernel: number; bias: number; pads: number[] }
    | { kind: 'pool'; input: string; output: string; oddRows: number; oddCols: number }
    | { kind: 'gap'; input: string; area: number }
    | { kind: 'dense'; input: string; weight: string; kernel: number; bias: number };
  const steps: Step[] = [];
  let h = transpose(GRAD_INPUT, [0, 3, 1, 2]);
  let logits: string | undefined;
  for (const layer of model.layers) {
    const cls = layer.getClassName();
    const config = layer.getConfig() as Record<string, unknown>;
    switch (cls) {
      case 'InputLayer':
        break;
      case 'Rescaling':
        h = node('Add', [node('Mul', [h, floats([config.scale as number])]), floats([config.offset as number])]);
        break;
      case 'Conv2D': {
        const [kh, kw] = config.kernelSize as number[];
        const strides = config.strides as number[];
        const dilation = config.dilationRate as number[] | number;
        if (config.activation !== 'relu' || config.useBias !== true || strides.some((s) => s !== 1) || [dilation].flat().some((d) => d !== 1) || kh! % 2 === 0 || kw! % 2 === 0) {
          throw new CamflowError('ONNX_EXPORT', `conv layer ${layer.name}: the gradient graph supports stride-1, odd-kernel convolutions with bias and ReLU`);
        }
        const pads = config.padding === 'same' ? [(kh! - 1) / 2, (kw! - 1) / 2, (kh! - 1) / 2, (kw! - 1) / 2] : [0, 0, 0, 0];
        const kernel = weightOf(layer, 0);
        const bias = weightOf(layer, 1);
        const weight = transpose(gradWeightName(kernel), [3, 2, 0, 1]);
        const z = node('Conv', [h, weight, gradWeightName(bias)], [{ name: 'kernel_shape', ints: [kh!, kw!] }, { name: 'pads', ints: pads }]);
        steps.push({ kind: 'conv', input: h, z, weight, kernel, bias, pads });
        h = node('Relu', [z]);
        break;
      }
      case 'MaxPooling2D': {
        const pool = config.poolSize as number[];
        const strides = (config.strides as number[] | null) ?? pool;
        if (pool.some((p) => p !== 2) || strides.some((s) => s !== 2) || config.padding !== 'valid') throw new CamflowError('ONNX_EXPORT', `pooling layer ${layer.name}: the gradient graph supports 2×2, stride 2, valid`);
        const out = node('MaxPool', [h], [{ name: 'kernel_shape', ints: [2, 2] }, { name: 'strides', ints: [2, 2] }]);
        const shape = (layer.input as tf.SymbolicTensor).shape;
        steps.push({ kind: 'pool', input: h, output: out, oddRows: shape[1]! % 2, oddCols: shape[2]! % 2 });
        h = out;
        break;
      }
      case 'GlobalAveragePooling2D': {
        const shape = (layer.input as tf.SymbolicTensor).shape;
        steps.push({ kind: 'gap', input: h, area: shape[1]! * shape[2]! });
        h = node('ReduceMean', [h], [{ name: 'axes', ints: [2, 3] }, { name: 'keepdims', i: 0 }]);
        break;
      }
      case 'Dense': {
        if (config.activation !== 'linear' || config.useBias !== true) throw new CamflowError('ONNX_EXPORT', `dense layer ${layer.name}: the gradient graph supports a linear layer with bias`);
        const kernel = weightOf(layer, 0);
        const bias = weightOf(layer, 1);
        steps.push({ kind: 'dense', input: h, weight: gradWeightName(kernel), kernel, bias });
        logits = node('Gemm', [h, gradWeightName(kernel), gradWeightName(bias)]);
        h = logits;
        break;
      }
      default:
        throw new CamflowError('ONNX_EXPORT', `layer ${layer.name} of class ${cls} has no gradient graph`);
    }
  }
  if (!logits) throw new CamflowError('ONNX_EXPORT', 'model has no classifier');

  // Loss: Σₙ wₙ · −Σ_c y log softmax.
  const logSoftmax = node('LogSoftmax', [logits], [{ name: 'axis', i: 1 }]);
  const perImage = node('Neg', [reduceSum(node('Mul', [GRAD_LABELS, logSoftmax]), [1])]);
  node('ReduceSum', [node('Mul', [perImage, GRAD_SAMPLE_WEIGHTS]), int64s([0])], [{ name: 'keepdims', i: 0 }], [GRAD_LOSS]);

  // Backward.
  const grads = new Map<number, string>();
  const zero = floats([0]);
  let g = node('Mul', [node('Sub', [node('Softmax', [logits], [{ name: 'axis', i: 1 }]), GRAD_LABELS]), node('Unsqueeze', [GRAD_SAMPLE_WEIGHTS, int64s([1])])]);
  for (let s = steps.length - 1; s >= 0; s--) {
    const step = steps[s]!;
    if (step.kind === 'dense') {
      grads.set(step.kernel, node('MatMul', [transpose(step.input, [1, 0]), g]));
      grads.set(step.bias, reduceSum(g, [0]));
      g = node('MatMul', [g, transpose(step.weight, [1, 0])]);
    } else if (step.kind === 'gap') {
      const spread = node('Unsqueeze', [node('Mul', [g, floats([1 / step.area])]), int64s([2, 3])]);
      g = node('Expand', [spread, node('Shape', [step.input])]);
    } else if (step.kind === 'pool') {
      // Each output's gradient goes back to where its window's maximum was: both spread over their 2×2 window and
      // kept where the input equals the window's max. (Ties among positive values would share it — measure zero;
      // a window of ReLU zeros passes it on to pixels whose ReLU gradient is zero.) No MaxPool indices: ONNX
      // Runtime's WebGPU provider has none.
      const up = (t: string) => {
        const shape = node('Shape', [t]);
        const six = node('Concat', [node('Slice', [shape, int64s([0]), int64s([3])]), int64s([2]), node('Slice', [shape, int64s([3]), int64s([4])]), int64s([2])], [{ name: 'axis', i: 0 }]);
        const spread = node('Expand', [node('Unsqueeze', [t, int64s([3, 5])]), six]);
        const four = node('Concat', [node('Slice', [shape, int64s([0]), int64s([2])]), node('Mul', [node('Slice', [shape, int64s([2]), int64s([4])]), int64s([2, 2])])], [{ name: 'axis', i: 0 }]);
        return node('Reshape', [spread, four]);
      };
      let input = step.input;
      if (step.oddRows || step.oddCols) {
        // The last row / column a 2×2 stride-2 pool never reads.
        const ends = int64s([-step.oddRows || Number.MAX_SAFE_INTEGER, -step.oddCols || Number.MAX_SAFE_INTEGER]);
        input = node('Slice', [input, int64s([0, 0]), ends, int64s([2, 3])]);
      }
      const mask = node('Cast', [node('Equal', [input, up(step.output)])], [{ name: 'to', i: FLOAT }]);
      g = node('Mul', [mask, up(g)]);
      if (step.oddRows || step.oddCols) g = node('Pad', [g, int64s([0, 0, 0, 0, 0, 0, step.oddRows, step.oddCols])]);
    } else if (step.kind === 'conv') {
      const dz = node('Where', [node('Greater', [step.z, zero]), g, zero]);
      grads.set(step.bias, reduceSum(dz, [0, 2, 3]));
      // ∂W[o, i, ky, kx] as a convolution over the batch, then back to tfjs's [kh, kw, in, out].
      const dw = node('Conv', [transpose(step.input, [1, 0, 2, 3]), transpose(dz, [1, 0, 2, 3])], [{ name: 'pads', ints: step.pads }]);
      grads.set(step.kernel, transpose(dw, [2, 3, 0, 1]));
      // The input's gradient only where a layer with weights lies before this one.
      if (steps.slice(0, s).some((p) => p.kind === 'conv' || p.kind === 'dense')) g = node('ConvTranspose', [dz, step.weight], [{ name: 'pads', ints: step.pads }]);
    }
  }
  const count = model.trainableWeights.length;
  const outputs: string[] = [];
  for (let k = 0; k < count; k++) {
    const name = grads.get(k);
    if (!name) throw new CamflowError('ONNX_EXPORT', `no gradient for trainable weight ${k}`);
    outputs.push(node('Identity', [name], [], [gradOutputName(k)]));
  }
  const dim = (d: number | string) => (typeof d === 'string' ? { dimParam: d } : { dimValue: d });
  const tensorType = (dims: (number | string)[]) => ({ tensorType: { elemType: FLOAT, shape: { dim: dims.map(dim) } } });
  const size = model.inputs[0]!.shape[1]!;
  const numClasses = (model.outputs[0]!.shape as number[])[1]!;
  const graph = onnx.GraphProto.create({
    name: `${model.name}_gradients`,
    node: nodes,
    initializer: initializers,
    input: [
      onnx.ValueInfoProto.create({ name: GRAD_INPUT, type: tensorType(['N', size, size, 3]) }),
      onnx.ValueInfoProto.create({ name: GRAD_LABELS, type: tensorType(['N', numClasses]) }),
      onnx.ValueInfoProto.create({ name: GRAD_SAMPLE_WEIGHTS, type: tensorType(['N']) }),
      ...model.trainableWeights.map((w, k) => onnx.ValueInfoProto.create({ name: gradWeightName(k), type: tensorType(w.shape as number[]) })),
    ],
    output: [onnx.ValueInfoProto.create({ name: GRAD_LOSS, type: tensorType([]) }), ...model.trainableWeights.map((w, k) => onnx.ValueInfoProto.create({ name: gradOutputName(k), type: tensorType(w.shape as number[]) }))],
  });
  return onnx.ModelProto.encode(onnx.ModelProto.create({ irVersion: 8, producerName: 'camflow', producerVersion: '0.1.0', opsetImport: [{ domain: '', version: 17 }], graph })).finish();
}
