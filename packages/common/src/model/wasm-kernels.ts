import * as tf from '@tensorflow/tfjs';
import { CamflowError } from '../errors.js';

/**
 * Training kernels for the wasm backend, built on its XNNPACK Conv2D.
 *
 * The wasm backend has no Conv2DBackpropFilter, so it cannot train a CNN. Both gradients of a convolution are
 * themselves convolutions after a transpose:
 *  - dW[kh,kw,ci,co] = Σ_{b,y,x} x[b, y·s+kh, x·s+kw, ci] · dy[b,y,x,co]: a convolution of x (batch and channel
 *    axes swapped, so the batch becomes the reduced channel axis) with dy as the filter, dilated by the stride.
 *  - dx (stride 1) = a "full" convolution of dy with the filter rotated by 180° and its in/out channels swapped.
 */

type Info = tf.TensorInfo;
type KernelArgs = { inputs: tf.NamedTensorInfoMap; backend: object; attrs?: tf.NamedAttrMap };

function kernel(name: string) {
  const config = tf.getKernel(name, 'wasm');
  if (!config) throw new CamflowError('BACKEND', `wasm backend lacks the ${name} kernel`);
  return (inputs: tf.NamedTensorInfoMap, backend: tf.KernelBackend, attrs: tf.NamedAttrMap) =>
    config.kernelFunc({ inputs, backend, attrs }) as Info;
}

type PadSpec = 'valid' | 'same' | number | tf.backend_util.ExplicitPadding;

let registered = false;

/** Register the kernels once per process; safe to call again. */
export function registerWasmTrainingKernels(): void {
  if (registered) return;
  const conv2d = kernel('Conv2D');
  const transpose = kernel('Transpose');
  const reverse = kernel('Reverse');
  const padV2 = kernel('PadV2');
  const slice = kernel('Slice');
  const originalBackpropInput = tf.getKernel('Conv2DBackpropInput', 'wasm');

  const free = (backend: tf.KernelBackend, ...infos: Info[]) => {
    for (const info of infos) backend.disposeData(info.dataId);
  };

  tf.registerKernel({
    kernelName: 'Conv2DBackpropFilter',
    backendName: 'wasm',
    kernelFunc: ({ inputs, backend: anyBackend, attrs }: KernelArgs) => {
      const backend = anyBackend as tf.KernelBackend;
      const { x, dy } = inputs as { x: Info; dy: Info };
      const { strides, pad, dataFormat, dimRoundingMode, filterShape } = attrs as unknown as {
        strides: [number, number] | number;
        pad: PadSpec;
        dataFormat: 'NHWC' | 'NCHW';
        dimRoundingMode?: 'floor' | 'round' | 'ceil';
        filterShape: [number, number, number, number];
      };
      if (dataFormat !== undefined && dataFormat !== 'NHWC') throw new CamflowError('BACKEND', 'Conv2DBackpropFilter (wasm): only NHWC');
      const info = tf.backend_util.computeConv2DInfo(x.shape as [number, number, number, number], filterShape, strides, 1, pad, dimRoundingMode, false, 'channelsLast');
      const { strideHeight: sh, strideWidth: sw, filterHeight: kh, filterWidth: kw, outHeight: oh, outWidth: ow } = info;
      const { top, left } = info.padInfo;
      // Rows and columns of (padded) x that the forward convolution actually read.
      const needH = kh + (oh - 1) * sh;
      const needW = kw + (ow - 1) * sw;
      const [b, h, w, c] = x.shape as [number, number, number, number];
      const bottom = Math.max(0, needH - (h + top));
      const right = Math.max(0, needW - (w + left));
      let xp: Info = x;
      const temps: Info[] = [];
      if (top || bottom || left || right) {
        xp = padV2({ x }, backend, { paddings: [[0, 0], [top, bottom], [left, right], [0, 0]], constantValue: 0 });
        temps.push(xp);
      }
      if (xp.shape[1] !== needH || xp.shape[2] !== needW) {
        xp = slice({ x: xp }, backend, { begin: [0, 0, 0, 0], size: [b, needH, needW, c] });
        temps.push(xp);
      }
      const xt = transpose({ x: xp }, backend, { perm: [3, 1, 2, 0] }); // [Ci, H, W, B]
      const dyt = transpose({ x: dy }, backend, { perm: [1, 2, 0, 3] }); // [OH, OW, B, Co]
      const r = conv2d({ x: xt, filter: dyt }, backend, { strides: [1, 1], pad: 'valid', dataFormat: 'NHWC', dilations: [sh, sw], dimRoundingMode: 'floor' }); // [Ci, KH, KW, Co]
      const dw = transpose({ x: r }, backend, { perm: [1, 2, 0, 3] });
      free(backend, ...temps, xt, dyt, r);
      return dw;
    },
  });

  tf.unregisterKernel('Conv2DBackpropInput', 'wasm');
  tf.registerKernel({
    kernelName: 'Conv2DBackpropInput',
    backendName: 'wasm',
    kernelFunc: (args: KernelArgs) => {
      const { inputs, attrs } = args;
      const backend = args.backend as tf.KernelBackend;
      const { dy, filter } = inputs as { dy: Info; filter: Info };
      const { inputShape, strides, pad, dataFormat, dimRoundingMode } = attrs as unknown as {
        inputShape: [number, number, number, number];
        strides: [number, number] | number;
        pad: PadSpec;
        dataFormat: 'NHWC' | 'NCHW';
        dimRoundingMode?: 'floor' | 'round' | 'ceil';
      };
      const fShape = filter.shape as [number, number, number, number];
      const info = tf.backend_util.computeConv2DInfo(inputShape, fShape, strides, 1, pad, dimRoundingMode, false, 'channelsLast');
      const [, h, w] = inputShape;
      const pt = info.filterHeight - 1 - info.padInfo.top;
      const pl = info.filterWidth - 1 - info.padInfo.left;
      const pb = h - info.outHeight + info.padInfo.top;
      const pr = w - info.outWidth + info.padInfo.left;
      const supported = (dataFormat === undefined || dataFormat === 'NHWC') && info.strideHeight === 1 && info.strideWidth === 1 && pt >= 0 && pl >= 0 && pb >= 0 && pr >= 0;
      if (!supported) {
        if (!originalBackpropInput) throw new CamflowError('BACKEND', 'Conv2DBackpropInput (wasm): unsupported attributes');
        return originalBackpropInput.kernelFunc(args) as Info;
      }
      const dyp = pt || pb || pl || pr ? padV2({ x: dy }, backend, { paddings: [[0, 0], [pt, pb], [pl, pr], [0, 0]], constantValue: 0 }) : dy;
      const rotated = reverse({ x: filter }, backend, { dims: [0, 1] });
      const swapped = transpose({ x: rotated }, backend, { perm: [0, 1, 3, 2] }); // [KH, KW, Co, Ci]
      const dx = conv2d({ x: dyp, filter: swapped }, backend, { strides: [1, 1], pad: 'valid', dataFormat: 'NHWC', dilations: [1, 1], dimRoundingMode: 'floor' });
      free(backend, rotated, swapped, ...(dyp === dy ? [] : [dyp]));
      return dx;
    },
  });
  registered = true;
}
