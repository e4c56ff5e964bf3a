import onnxProto from 'onnx-proto';
import * as tf from '@tensorflow/tfjs';
import { CamflowError } from '../errors.js';
import { FEATURES_LAYER } from './presets.js';

const { onnx } = onnxProto;

/** ONNX graph names of the exported model's input and outputs. */
export const ONNX_INPUT = 'input';
export const ONNX_LOGITS = 'logits';
export const ONNX_FEATURES = 'features';

const FLOAT = 1;
const UINT8 = 2;
const ATTR_INT = 2;
const ATTR_INTS = 7;
const ATTR_STRING = 3;

type Attr = { name: string; ints?: number[]; i?: number; s?: string };

function attribute(a: Attr) {
  if (a.ints) return { name: a.name, type: ATTR_INTS, ints: a.ints };
  if (a.s !== undefined) return { name: a.name, type: ATTR_STRING, s: new TextEncoder().encode(a.s) };
  return { name: a.name, type: ATTR_INT, i: a.i ?? 0 };
}

/**
 * Export a camflow GAP-CNN (a tfjs sequential model) to ONNX with two outputs: `logits` and the last conv
 * layer's ReLU output `features` in channels-last layout (the layout the CAM maths reads). The input is
 * `input`: uint8 `[N, S, S, 3]` RGB bytes; the graph scales them to [0, 1] as the tfjs engine does. Weights are converted from
 * TensorFlow's `[kh, kw, in, out]` to ONNX's `[out, in, kh, kw]`.
 * @example const bytes = exportOnnx(model); // → models/<version>/model.onnx
 */
export function exportOnnx(model: tf.LayersModel): Uint8Array {
  const nodes: ReturnType<typeof onnx.NodeProto.create>[] = [];
  const initializers: ReturnType<typeof onnx.TensorProto.create>[] = [];
  let counter = 0;
  const fresh = (base: string) => `${base}_${counter++}`;
  const constant = (name: string, dims: number[], values: Float32Array) => {
    initializers.push(onnx.TensorProto.create({ name, dims, dataType: FLOAT, rawData: new Uint8Array(values.buffer.slice(values.byteOffset, values.byteOffset + values.byteLength)) }));
    return name;
  };
  const node = (opType: string, inputs: string[], attrs: Attr[] = [], output = fresh(opType.toLowerCase())) => {
    nodes.push(onnx.NodeProto.create({ opType, input: inputs, output: [output], name: output, attribute: attrs.map(attribute) }));
    return output;
  };
  const size = model.inputs[0]!.shape[1]!;
  // Bytes in, scaled in the graph: no per-pixel conversion loop in JavaScript on the hot path.
  let x = node('Cast', [ONNX_INPUT], [{ name: 'to', i: FLOAT }]);
  x = node('Mul', [x, constant(fresh('inv255'), [], Float32Array.of(1 / 255))]);
  x = node('Transpose', [x], [{ name: 'perm', ints: [0, 3, 1, 2] }]);
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
        x = node('Mul', [x, constant(fresh('scale'), [], Float32Array.of(config.scale as number))]);
        x = node('Add', [x, constant(fresh('offset'), [], Float32Array.of(config.offset as number))]);
        break;
      }
      case 'Conv2D': {
        const kernel = weights[0]!;
        const [kh, kw, cin, cout] = kernel.shape as [number, number, number, number];
        const w = tf.tidy(() => tf.transpose(kernel, [3, 2, 0, 1]).dataSync() as Float32Array);
        const inputs = [x, constant(fresh(`${layer.name}_W`), [cout, cin, kh, kw], w)];
        if (weights[1]) inputs.push(constant(fresh(`${layer.name}_B`), [cout], weights[1].dataSync() as Float32Array));
        const strides = config.strides as number[];
        const dilation = config.dilationRate as number[] | number;
        const attrs: Attr[] = [
          { name: 'kernel_shape', ints: [kh, kw] },
          { name: 'strides', ints: strides },
          { name: 'dilations', ints: Array.isArray(dilation) ? dilation : [dilation, dilation] },
        ];
        // TensorFlow's "same" puts the extra padding row/column at the end: ONNX SAME_UPPER.
        attrs.push(config.padding === 'same' ? { name: 'auto_pad', s: 'SAME_UPPER' } : { name: 'pads', ints: [0, 0, 0, 0] });
        x = node('Conv', inputs, attrs);
        if (config.activation === 'relu') x = node('Relu', [x]);
        else if (config.activation !== 'linear') throw new CamflowError('ONNX_EXPORT', `unsupported conv activation ${String(config.activation)}`);
        break;
      }
      case 'ReLU':
        x = node('Relu', [x]);
        break;
      case 'MaxPooling2D': {
        const pool = config.poolSize as number[];
        const strides = (config.strides as number[] | null) ?? pool;
        if (config.padding !== 'valid') throw new CamflowError('ONNX_EXPORT', 'only valid max pooling');
        x = node('MaxPool', [x], [{ name: 'kernel_shape', ints: pool }, { name: 'strides', ints: strides }]);
        break;
      }
      case 'GlobalAveragePooling2D':
        x = node('GlobalAveragePool', [x]);
        x = node('Flatten', [x], [{ name: 'axis', i: 1 }]);
        break;
      case 'Dense': {
        const kernel = weights[0]!;
        const [k, c] = kernel.shape as [number, number];
        x = node('MatMul', [x, constant(fresh(`${layer.name}_W`), [k, c], kernel.dataSync() as Float32Array)]);
        x = node('Add', [x, constant(fresh(`${layer.name}_B`), [c], weights[1]!.dataSync() as Float32Array)], [], ONNX_LOGITS);
        if (config.activation !== 'linear') throw new CamflowError('ONNX_EXPORT', 'the classifier must output logits');
        logits = x;
        break;
      }
      default:
        throw new CamflowError('ONNX_EXPORT', `layer ${layer.name} of class ${cls} has no ONNX export`);
    }
    if (layer.name === FEATURES_LAYER) features = node('Transpose', [x], [{ name: 'perm', ints: [0, 2, 3, 1] }], ONNX_FEATURES);
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
    ],
  });
  const modelProto = onnx.ModelProto.create({ irVersion: 8, producerName: 'camflow', producerVersion: '0.1.0', opsetImport: [{ domain: '', version: 17 }], graph });
  return onnx.ModelProto.encode(modelProto).finish();
}
