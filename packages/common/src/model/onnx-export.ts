import onnxProto from 'onnx-proto';
import type * as tf from '@tensorflow/tfjs';
import { CamflowError, InvalidParameterError } from '../errors.js';
import { FEATURES_LAYER } from './presets.js';

const { onnx } = onnxProto;

/** ONNX graph names of the exported model's input and outputs. */
export const ONNX_INPUT = 'input';
export const ONNX_LOGITS = 'logits';
export const ONNX_FEATURES = 'features';
/** Prefix of the per-layer probe outputs (calibration): `probe:<layer name>`, NCHW float, after the activation. */
export const ONNX_PROBE = 'probe:';

const FLOAT = 1;
const UINT8 = 2;
const INT8 = 3;
const INT32 = 6;
const ATTR_INT = 2;
const ATTR_INTS = 7;
const ATTR_STRING = 3;

type Attr = { name: string; ints?: number[]; i?: number; s?: string };

function attribute(a: Attr) {
  if (a.ints) return { name: a.name, type: ATTR_INTS, ints: a.ints };
  if (a.s !== undefined) return { name: a.name, type: ATTR_STRING, s: new TextEncoder().encode(a.s) };
  return { name: a.name, type: ATTR_INT, i: a.i ?? 0 };
}

export interface ExportOptions {
  /**
   * Quantize the hidden convolutions to int8 (ONNX QLinearConv: per-output-channel symmetric int8 weights, uint8
   * activations with zero point 0, which is the ReLU). `activationMax` is each conv layer's largest post-ReLU
   * activation over calibration images (see `calibrate`). The first conv reads the input bytes as they are
   * (scale 1/255, exact); the features conv, the pooling and the classifier stay float so the CAM reads float
   * features. Layers that are not conv+ReLU stay float.
   */
  int8?: { activationMax: Record<string, number> };
  /** Also output every conv layer's activation as `probe:<layer>` (for calibration). */
  probes?: boolean;
}

interface Quantized {
  name: string;
  scale: number;
}

/**
 * Export a camflow GAP-CNN (a tfjs sequential model) to ONNX with two outputs: `logits` and the last conv
 * layer's ReLU output `features` in channels-last layout (the layout the CAM maths reads). The input is
 * `input`: uint8 `[N, S, S, 3]` RGB bytes; the graph scales them to [0, 1] as the tfjs engine does. Weights are converted from
 * TensorFlow's `[kh, kw, in, out]` to ONNX's `[out, in, kh, kw]`.
 * @example const bytes = exportOnnx(model); // → models/<version>/model.onnx
 */
export function exportOnnx(model: tf.LayersModel, options: ExportOptions = {}): Uint8Array {
  const nodes: ReturnType<typeof onnx.NodeProto.create>[] = [];
  const initializers: ReturnType<typeof onnx.TensorProto.create>[] = [];
  const probeOutputs: string[] = [];
  let counter = 0;
  const fresh = (base: string) => `${base}_${counter++}`;
  const tensor = (name: string, dims: number[], dataType: number, values: Float32Array | Int8Array | Int32Array | Uint8Array) => {
    initializers.push(onnx.TensorProto.create({ name, dims, dataType, rawData: new Uint8Array(values.buffer.slice(values.byteOffset, values.byteOffset + values.byteLength)) }));
    return name;
  };
  const constant = (name: string, dims: number[], values: Float32Array) => tensor(name, dims, FLOAT, values);
  const node = (opType: string, inputs: string[], attrs: Attr[] = [], output = fresh(opType.toLowerCase())) => {
    nodes.push(onnx.NodeProto.create({ opType, input: inputs, output: [output], name: output, attribute: attrs.map(attribute) }));
    return output;
  };
  let zeroName: string | undefined;
  const zeroU8 = () => (zeroName ??= tensor('zero_u8', [], UINT8, Uint8Array.of(0)));
  const size = model.inputs[0]!.shape[1]!;
  const int8 = options.int8;

  // The activation flows either as float NCHW (`x`) or as uint8 NCHW with a scale and zero point 0 (`q`); each is
  // built when a layer first needs it. The input bytes are already the uint8 form of input/255.
  let q: Quantized | undefined = int8 ? { name: node('Transpose', [ONNX_INPUT], [{ name: 'perm', ints: [0, 3, 1, 2] }]), scale: 1 / 255 } : undefined;
  let x: string | undefined;
  if (!int8) {
    // Bytes in, scaled in the graph: no per-pixel conversion loop in JavaScript on the hot path.
    x = node('Cast', [ONNX_INPUT], [{ name: 'to', i: FLOAT }]);
    x = node('Mul', [x, constant(fresh('inv255'), [], Float32Array.of(1 / 255))]);
    x = node('Transpose', [x], [{ name: 'perm', ints: [0, 3, 1, 2] }]);
  }
  const float = (): string => {
    if (x) return x;
    if (!q) throw new CamflowError('ONNX_EXPORT', 'no activation');
    x = node('DequantizeLinear', [q.name, constant(fresh('scale'), [], Float32Array.of(q.scale)), zeroU8()]);
    return x;
  };
  // The calibrated maximum of the float activation `x` when it is a ReLU output (it can then be quantized).
  let floatMax: number | undefined;
  const setFloat = (name: string, max?: number) => {
    x = name;
    q = undefined;
    floatMax = max;
  };
  const quantized = (): Quantized | undefined => {
    if (q) return q;
    if (!x || floatMax === undefined) return undefined;
    const scale = floatMax / 255;
    q = { name: node('QuantizeLinear', [x, constant(fresh('scale'), [], Float32Array.of(scale)), zeroU8()]), scale };
    return q;
  };
  let features: string | undefined;
  let logits: string | undefined;
  for (const layer of model.layers) {
    const cls = layer.getClassName();
    const config = layer.getConfig() as Record<string, unknown>;
    const weights = layer.getWeights();
    switch (cls) {
      case 'InputLayer':
        break;
      case 'Rescaling': {
        const scaled = node('Mul', [float(), constant(fresh('scale'), [], Float32Array.of(config.scale as number))]);
        setFloat(node('Add', [scaled, constant(fresh('offset'), [], Float32Array.of(config.offset as number))]));
        break;
      }
      case 'Conv2D': {
        const kernel = weights[0]!;
        const [kh, kw, cin, cout] = kernel.shape as [number, number, number, number];
        const w = hwioToOihw(kernel.dataSync() as Float32Array, kh, kw, cin, cout);
        const bias = weights[1] ? (weights[1].dataSync() as Float32Array) : new Float32Array(cout);
        const strides = config.strides as number[];
        const dilation = config.dilationRate as number[] | number;
        const attrs: Attr[] = [
          { name: 'kernel_shape', ints: [kh, kw] },
          { name: 'strides', ints: strides },
          { name: 'dilations', ints: Array.isArray(dilation) ? dilation : [dilation, dilation] },
        ];
        // TensorFlow's "same" puts the extra padding row/column at the end: ONNX SAME_UPPER.
        attrs.push(config.padding === 'same' ? { name: 'auto_pad', s: 'SAME_UPPER' } : { name: 'pads', ints: [0, 0, 0, 0] });
        const max = int8?.activationMax[layer.name];
        if (max !== undefined && (!(max > 0) || !Number.isFinite(max))) throw new InvalidParameterError(`int8.activationMax.${layer.name}`, 'a positive finite number', max);
        const relu = config.activation === 'relu';
        const input = int8 && layer.name !== FEATURES_LAYER && relu && max !== undefined ? quantized() : undefined;
        if (input && max !== undefined) {
          const quantizedWeights = quantizeWeights(w, cout);
          const outScale = max / 255;
          const biasQ = Int32Array.from(bias, (b, c) => Math.round(b / (input.scale * quantizedWeights.scales[c]!)));
          const y = node(
            'QLinearConv',
            [
              input.name,
              constant(fresh('x_scale'), [], Float32Array.of(input.scale)),
              zeroU8(),
              tensor(fresh(`${layer.name}_Wq`), [cout, cin, kh, kw], INT8, quantizedWeights.values),
              constant(fresh(`${layer.name}_Wscale`), [cout], quantizedWeights.scales),
              tensor(fresh('zero_s8'), [cout], INT8, new Int8Array(cout)),
              constant(fresh('y_scale'), [], Float32Array.of(outScale)),
              zeroU8(),
              tensor(fresh(`${layer.name}_Bq`), [cout], INT32, biasQ),
            ],
            attrs,
          );
          // Zero point 0 on uint8 clamps negatives to 0: the ReLU is in the requantization.
          q = { name: y, scale: outScale };
          x = undefined;
          floatMax = undefined;
          if (options.probes) probeOutputs.push(node('DequantizeLinear', [y, constant(fresh('scale'), [], Float32Array.of(outScale)), zeroU8()], [], `${ONNX_PROBE}${layer.name}`));
          break;
        }
        const inputs = [float(), constant(fresh(`${layer.name}_W`), [cout, cin, kh, kw], w), constant(fresh(`${layer.name}_B`), [cout], bias)];
        let y = node('Conv', inputs, attrs);
        if (config.activation === 'relu') y = node('Relu', [y]);
        else if (config.activation !== 'linear') throw new CamflowError('ONNX_EXPORT', `unsupported conv activation ${String(config.activation)}`);
        setFloat(y, relu ? max : undefined);
        if (options.probes) probeOutputs.push(node('Identity', [y], [], `${ONNX_PROBE}${layer.name}`));
        break;
      }
      case 'ReLU':
        setFloat(node('Relu', [float()]));
        break;
      case 'MaxPooling2D': {
        const pool = config.poolSize as number[];
        const strides = (config.strides as number[] | null) ?? pool;
        if (config.padding !== 'valid') throw new CamflowError('ONNX_EXPORT', 'only valid max pooling');
        const attrs = [{ name: 'kernel_shape', ints: pool }, { name: 'strides', ints: strides }];
        // The maximum commutes with a monotone quantization: pool the bytes when the activation is quantized.
        if (q && !x) q = { name: node('MaxPool', [q.name], attrs), scale: q.scale };
        else setFloat(node('MaxPool', [float()], attrs), floatMax);
        break;
      }
      case 'GlobalAveragePooling2D':
        setFloat(node('Flatten', [node('GlobalAveragePool', [float()])], [{ name: 'axis', i: 1 }]));
        break;
      case 'Dense': {
        const kernel = weights[0]!;
        const [k, c] = kernel.shape as [number, number];
        const mm = node('MatMul', [float(), constant(fresh(`${layer.name}_W`), [k, c], kernel.dataSync() as Float32Array)]);
        logits = node('Add', [mm, constant(fresh(`${layer.name}_B`), [c], weights[1]!.dataSync() as Float32Array)], [], ONNX_LOGITS);
        if (config.activation !== 'linear') throw new CamflowError('ONNX_EXPORT', 'the classifier must output logits');
        setFloat(logits);
        break;
      }
      default:
        throw new CamflowError('ONNX_EXPORT', `layer ${layer.name} of class ${cls} has no ONNX export`);
    }
    if (layer.name === FEATURES_LAYER) features = node('Transpose', [float()], [{ name: 'perm', ints: [0, 2, 3, 1] }], ONNX_FEATURES);
  }
  if (!features || !logits) throw new CamflowError('ONNX_EXPORT', 'model has no "features" layer or no classifier');
  const dim = (d: number | string) => (typeof d === 'string' ? { dimParam: d } : { dimValue: d });
  const tensorType = (dims: (number | string)[]) => ({ tensorType: { elemType: FLOAT, shape: { dim: dims.map(dim) } } });
  const featureShape = (model.getLayer(FEATURES_LAYER).outputShape as number[]).slice(1);
  const numClasses = (model.outputs[0]!.shape as number[])[1]!;
  const graph = onnx.GraphProto.create({
    name: model.name,
    node: nodes,
    initializer: initializers,
    input: [onnx.ValueInfoProto.create({ name: ONNX_INPUT, type: { tensorType: { elemType: UINT8, shape: { dim: ['N', size, size, 3].map(dim) } } } })],
    output: [
      onnx.ValueInfoProto.create({ name: ONNX_LOGITS, type: tensorType(['N', numClasses]) }),
      onnx.ValueInfoProto.create({ name: ONNX_FEATURES, type: tensorType(['N', ...featureShape]) }),
      ...probeOutputs.map((name) => onnx.ValueInfoProto.create({ name, type: { tensorType: { elemType: FLOAT } } })),
    ],
  });
  const modelProto = onnx.ModelProto.create({ irVersion: 8, producerName: 'camflow', producerVersion: '0.1.0', opsetImport: [{ domain: '', version: 17 }], graph });
  return onnx.ModelProto.encode(modelProto).finish();
}

/**
 * Largest weight level: 7 bits (ONNX Runtime's `reduce_range`). On x86 CPUs without VNNI, ORT's u8×s8 convolution
 * adds pairs of products in int16 (`vpmaddubsw`), which saturates for 255 × 127 × 2; with |q| ≤ 63 a pair stays below
 * 2¹⁵. Found on an AMD EPYC without VNNI, where 8-bit weights gave features 16 % of their range away from the
 * quantized network's arithmetic (`test/unit/int8.test.ts`), while a VNNI machine agreed.
 */
export const WEIGHT_LEVELS = 63;

/**
 * Symmetric per-output-channel quantization of an `[out, …]` float kernel to int8 storage:
 * `scale_c = max|W_c| / 63`, `q = round(W / scale_c)` in [-63, 63] (see `WEIGHT_LEVELS`).
 */
export function quantizeWeights(w: Float32Array, outChannels: number): { values: Int8Array; scales: Float32Array } {
  const per = w.length / outChannels;
  const values = new Int8Array(w.length);
  const scales = new Float32Array(outChannels);
  for (let c = 0; c < outChannels; c++) {
    let max = 0;
    for (let i = c * per; i < (c + 1) * per; i++) max = Math.max(max, Math.abs(w[i]!));
    const scale = max > 0 ? max / WEIGHT_LEVELS : 1;
    scales[c] = scale;
    for (let i = c * per; i < (c + 1) * per; i++) values[i] = Math.max(-WEIGHT_LEVELS, Math.min(WEIGHT_LEVELS, Math.round(w[i]! / scale)));
  }
  return { values, scales };
}

/** Pure: a conv kernel from tfjs's [KH][KW][Ci][Co] layout to ONNX's [Co][Ci][KH][KW]. */
export function hwioToOihw(w: Float32Array, kh: number, kw: number, cin: number, cout: number): Float32Array {
  const out = new Float32Array(w.length);
  for (let y = 0; y < kh; y++)
    for (let x = 0; x < kw; x++)
      for (let i = 0; i < cin; i++)
        for (let o = 0; o < cout; o++) out[((o * cin + i) * kh + y) * kw + x] = w[((y * kw + x) * cin + i) * cout + o]!;
  return out;
}
