import * as tf from '@tensorflow/tfjs';
import { CamflowError } from '../errors.js';

/**
 * A faster `Conv2DBackpropFilter` for tfjs's WebGPU backend, composed of the backend's own fast kernels.
 *
 * The stock kernel runs one GPU thread per filter element, each looping over batch × output pixels: the seed net's
 * 5×5 convs have a few thousand filter elements and a reduction of ~460,000 terms each, so most of the GPU idles
 * (measured on an H200: conv1 + conv2 dW ≈ 80 % of a 450 ms training step, see shared/GPU.md). Here, for each of
 * the KH·KW filter offsets (kh, kw):
 *
 *   dW[kh, kw] = Σ_b  x[b, kh + s·y, kw + s·x, :]ᵀ · dy[b, y, x, :]     ([Ci, Co], K = OH·OW per image)
 *
 * i.e. one strided slice of x, one batched matmul (the backend's tiled matmul: many workgroups) and one sum over
 * the batch — the rewrite measured on the H200 at 353 / 1,646 images/s (b32 / b256) against the stock 63.
 * Checked against the cpu backend's gradients in `test/unit/webgpu.test.ts` (on lavapipe where no GPU is present).
 */

type Info = tf.TensorInfo;
type KernelArgs = { inputs: tf.NamedTensorInfoMap; backend: object; attrs?: tf.NamedAttrMap };
type PadSpec = 'valid' | 'same' | number | tf.backend_util.ExplicitPadding;

const BACKEND = 'webgpu';

function kernel(name: string) {
  const config = tf.getKernel(name, BACKEND);
  if (!config) throw new CamflowError('BACKEND', `webgpu backend lacks the ${name} kernel`);
  return (inputs: tf.NamedTensorInfoMap, backend: tf.KernelBackend, attrs: tf.NamedAttrMap = {}) => config.kernelFunc({ inputs, backend, attrs }) as Info;
}

let registered = false;
let stockConfig: tf.KernelConfig | undefined;
let camflowConfig: tf.KernelConfig | undefined;

/** Swap between camflow's composed kernel and tfjs's stock one (benchmarks measure both in one process). */
export function useWebGpuConvFilterKernel(which: 'camflow' | 'stock'): void {
  registerWebGpuTrainingKernels();
  tf.unregisterKernel('Conv2DBackpropFilter', BACKEND);
  tf.registerKernel(which === 'stock' ? stockConfig! : camflowConfig!);
}

/** Replace the webgpu backend's Conv2DBackpropFilter once per process; safe to call again. */
export function registerWebGpuTrainingKernels(): void {
  if (registered) return;
  const stock = tf.getKernel('Conv2DBackpropFilter', BACKEND);
  if (!stock) throw new CamflowError('BACKEND', 'webgpu backend is not registered (import @tensorflow/tfjs-backend-webgpu first)');
  const padV2 = kernel('PadV2');
  const stridedSlice = kernel('StridedSlice');
  const reshape = kernel('Reshape');
  const batchMatMul = kernel('BatchMatMul');
  const sum = kernel('Sum');
  const pack = kernel('Pack');

  stockConfig = { ...stock };
  tf.unregisterKernel('Conv2DBackpropFilter', BACKEND);
  tf.registerKernel((camflowConfig = {
    kernelName: 'Conv2DBackpropFilter',
    backendName: BACKEND,
    kernelFunc: (args: KernelArgs) => {
      const backend = args.backend as tf.KernelBackend;
      const { x, dy } = args.inputs as { x: Info; dy: Info };
      const { strides, pad, dataFormat, dimRoundingMode, filterShape } = args.attrs as unknown as {
        strides: [number, number] | number;
        pad: PadSpec;
        dataFormat?: 'NHWC' | 'NCHW';
        dimRoundingMode?: 'floor' | 'round' | 'ceil';
        filterShape: [number, number, number, number];
      };
      if (dataFormat !== undefined && dataFormat !== 'NHWC') return stock.kernelFunc(args) as Info;
      const info = tf.backend_util.computeConv2DInfo(x.shape as [number, number, number, number], filterShape, strides, 1, pad, dimRoundingMode, false, 'channelsLast');
      const { strideHeight: sh, strideWidth: sw, filterHeight: kh, filterWidth: kw, outHeight: oh, outWidth: ow, inChannels: ci, outChannels: co } = info;
      const { top, left } = info.padInfo;
      const [b, h, w] = x.shape as [number, number, number, number];
      const needH = kh + (oh - 1) * sh;
      const needW = kw + (ow - 1) * sw;
      const bottom = Math.max(0, needH - (h + top));
      const right = Math.max(0, needW - (w + left));
      const temps: Info[] = [];
      const keep = (t: Info) => (temps.push(t), t);
      try {
        const xp = top || bottom || left || right ? keep(padV2({ x }, backend, { paddings: [[0, 0], [top, bottom], [left, right], [0, 0]], constantValue: 0 })) : x;
        const dyr = keep(reshape({ x: dy }, backend, { shape: [b, oh * ow, co] }));
        const parts: Info[] = [];
        for (let i = 0; i < kh; i++) {
          for (let j = 0; j < kw; j++) {
            const xs = keep(stridedSlice({ x: xp }, backend, { begin: [0, i, j, 0], end: [b, i + (oh - 1) * sh + 1, j + (ow - 1) * sw + 1, ci], strides: [1, sh, sw, 1], beginMask: 0, endMask: 0, ellipsisMask: 0, newAxisMask: 0, shrinkAxisMask: 0 }));
            const xr = keep(reshape({ x: xs }, backend, { shape: [b, oh * ow, ci] }));
            const perImage = keep(batchMatMul({ a: xr, b: dyr }, backend, { transposeA: true, transposeB: false })); // [B, Ci, Co]
            parts.push(keep(sum({ x: perImage }, backend, { axis: [0], keepDims: false }))); // [Ci, Co]
          }
        }
        const packed = keep(pack(parts as unknown as tf.NamedTensorInfoMap, backend, { axis: 0 })); // [KH·KW, Ci, Co]
        return reshape({ x: packed }, backend, { shape: [kh, kw, ci, co] });
      } finally {
        for (const t of temps) backend.disposeData(t.dataId);
      }
    },
  }));
  registered = true;
}
