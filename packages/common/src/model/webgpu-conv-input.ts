import * as tf from '@tensorflow/tfjs';
import { BACKEND, type Info, MAX_WORKGROUPS_PER_DIMENSION, type KernelArgs, type WebGpuBackend, type WebGpuProgram } from './webgpu-program.js';

/**
 * A register-blocked `Conv2DBackpropInput` (dX: the gradient of a convolution with respect to its input) for tfjs's
 * WebGPU backend.
 *
 * dX is a matrix product with an im2col of dy gathered on the fly:
 *
 *   dx[m, n] = Σ_k  A[m, k] · W[k, n]        m = (b, iy, ix) ∈ B·H·W,  n = ci,  k = (kh, kw, co) ∈ KH·KW·Co
 *   A[m, k]  = dy[b, (iy + top − kh) / sh, (ix + left − kw) / sw, co]   (0 off the grid or outside dy)
 *
 * tfjs's default program reads dy and the filter from global memory for every term (28 of a seed step's 109 GPU-ms at
 * b256 on an H200: ~6 TFLOP/s where the forward convolutions ran at ~11). Here a 16 × 16 workgroup computes a tile of `16·rows × 16·cols` elements of dx
 * (each thread `rows × cols` of them: 8 multiply-adds per `rows + cols` reads of workgroup memory), with both
 * operands staged in workgroup memory 16 terms of k at a time. Input channels ≤ 16 (the seed's and fast's
 * second conv) take 128 × 16 tiles, wider ones 64 × 32. m needs no split: B·H·W gives thousands of workgroups.
 * Checked against the cpu backend in `test/unit/webgpu.test.ts`.
 *
 * Not the default: tfjs's program is not one thread per element but a vec4 one (4 input channels × 2 pixels per
 * thread, no workgroup memory), and on lavapipe this one runs 4× slower than it (seed conv2 / conv3 at b2,
 * `BENCH_GPU_QUICK=1 BENCH_GPU_PARTS=kernels npm run bench:gpu`: 1,326 / 332 ms against 331 / 78; a CPU pays dearly
 * for each barrier). Whether a GPU agrees is untimed: `useWebGpuConvInputKernel('camflow')` switches it on and
 * `bench:gpu` times both, alone (`kernel_ms.dx_*`) and in a whole seed step (`training.seed_b*.camflow_dx`).
 */

const TILE = 16;

export interface ConvInputGeometry {
  batch: number;
  /** dx: height, width, channels (ci). */
  h: number;
  w: number;
  ci: number;
  /** dy: height, width, channels (co). */
  oh: number;
  ow: number;
  co: number;
  kh: number;
  kw: number;
  sh: number;
  sw: number;
  top: number;
  left: number;
}

export interface ConvInputPlan {
  /** Rows of dx (B·H·W), columns (Ci), terms per element (KH·KW·Co). */
  m: number;
  n: number;
  k: number;
  /** Elements per thread: rows × cols (= 8). */
  rows: number;
  cols: number;
  /** Workgroups: tiles of n along x, tiles of m along y folded into z past 65,535. */
  dispatch: [number, number, number];
}

/** The tiling of a dX (pure): 128 × 16 tiles when Ci ≤ 16, else 64 × 32. */
export function planConvInput(g: ConvInputGeometry): ConvInputPlan {
  const m = g.batch * g.h * g.w;
  const cols = g.ci <= TILE ? 1 : 2;
  const rows = 8 / cols;
  const mTiles = Math.ceil(m / (TILE * rows));
  return {
    m,
    n: g.ci,
    k: g.kh * g.kw * g.co,
    rows,
    cols,
    dispatch: [Math.ceil(g.ci / (TILE * cols)), Math.min(mTiles, MAX_WORKGROUPS_PER_DIMENSION), Math.ceil(mTiles / MAX_WORKGROUPS_PER_DIMENSION)],
  };
}

/** The dy row and validity of a term along one axis: stride 1 needs no division (geometry is baked in). */
const axisIndex = (name: string, base: string, kernel: string, stride: number, extent: number) =>
  stride === 1
    ? `let ${name} = ${base} - ${kernel}; let ${name}Ok = ${name} >= 0 && ${name} < ${extent};`
    : `let ${name}S = ${base} - ${kernel}; let ${name} = ${name}S / ${stride}; let ${name}Ok = ${name}S >= 0 && ${name}S % ${stride} == 0 && ${name} < ${extent};`;

function convInputProgram(g: ConvInputGeometry, p: ConvInputPlan): WebGpuProgram {
  const tm = TILE * p.rows;
  const tn = TILE * p.cols;
  const kTiles = Math.ceil(p.k / TILE);
  return {
    variableNames: ['dy', 'weights'],
    outputShape: [g.batch, g.h, g.w, g.ci],
    shaderKey: `camflowConvDX_${Object.values(g).join('_')}`,
    dispatchLayout: { x: [3], y: [0, 1, 2] },
    dispatch: p.dispatch,
    workgroupSize: [TILE, TILE, 1],
    // Loops run a constant count (barriers need uniform control flow); loads outside dy or the filter read 0.
    getUserCode: () => `
      var<workgroup> dxA : array<array<f32, ${tm}>, ${TILE}>;
      var<workgroup> dxB : array<array<f32, ${tn}>, ${TILE}>;
      fn main() {
        _ = uniforms.outShape; // the backend binds its uniform buffer to every program: keep it in the layout
        let tx = i32(localId.x);
        let ty = i32(localId.y);
        let n0 = i32(workgroupId.x) * ${tn};
        let m0 = (i32(workgroupId.z) * ${MAX_WORKGROUPS_PER_DIMENSION} + i32(workgroupId.y)) * ${tm};
        // The thread's rows of dx (b, iy, ix) as dy offsets: the batch's first element, iy + top, ix + left.
        var rowBase : array<i32, ${p.rows}>;
        var rowY : array<i32, ${p.rows}>;
        var rowX : array<i32, ${p.rows}>;
        var rowOk : array<bool, ${p.rows}>;
        for (var i = 0; i < ${p.rows}; i = i + 1) {
          let mm = m0 + ty + ${TILE} * i;
          let pix = mm % ${g.h * g.w};
          rowBase[i] = (mm / ${g.h * g.w}) * ${g.oh * g.ow * g.co};
          rowY[i] = pix / ${g.w} + ${g.top};
          rowX[i] = pix % ${g.w} + ${g.left};
          rowOk[i] = mm < ${p.m};
        }
        var acc : array<array<f32, ${p.cols}>, ${p.rows}>;
        for (var t = 0; t < ${kTiles}; t = t + 1) {
          let k0 = t * ${TILE};
          // A: term k0 + tx (kh, kw, co) of dy for the thread's rows.
          let ka = k0 + tx;
          let akh = ka / ${g.kw * g.co};
          let akw = (ka % ${g.kw * g.co}) / ${g.co};
          let aco = ka % ${g.co};
          for (var i = 0; i < ${p.rows}; i = i + 1) {
            ${axisIndex('oy', 'rowY[i]', 'akh', g.sh, g.oh)}
            ${axisIndex('ox', 'rowX[i]', 'akw', g.sw, g.ow)}
            var a = 0.0;
            if (ka < ${p.k} && rowOk[i] && oyOk && oxOk) {
              a = dy[rowBase[i] + (oy * ${g.ow} + ox) * ${g.co} + aco];
            }
            dxA[tx][ty + ${TILE} * i] = a;
          }
          // B: term k0 + ty of the filter [kh, kw, ci, co] for the thread's columns.
          let kb = k0 + ty;
          let bkh = kb / ${g.kw * g.co};
          let bkw = (kb % ${g.kw * g.co}) / ${g.co};
          let bco = kb % ${g.co};
          for (var j = 0; j < ${p.cols}; j = j + 1) {
            let nb = n0 + tx + ${TILE} * j;
            var v = 0.0;
            if (kb < ${p.k} && nb < ${p.n}) {
              v = weights[((bkh * ${g.kw} + bkw) * ${g.ci} + nb) * ${g.co} + bco];
            }
            dxB[ty][tx + ${TILE} * j] = v;
          }
          workgroupBarrier();
          for (var k = 0; k < ${TILE}; k = k + 1) {
            var b : array<f32, ${p.cols}>;
            for (var j = 0; j < ${p.cols}; j = j + 1) {
              b[j] = dxB[k][tx + ${TILE} * j];
            }
            for (var i = 0; i < ${p.rows}; i = i + 1) {
              let a = dxA[k][ty + ${TILE} * i];
              for (var j = 0; j < ${p.cols}; j = j + 1) {
                acc[i][j] = acc[i][j] + a * b[j];
              }
            }
          }
          workgroupBarrier();
        }
        for (var i = 0; i < ${p.rows}; i = i + 1) {
          let mo = m0 + ty + ${TILE} * i;
          for (var j = 0; j < ${p.cols}; j = j + 1) {
            let no = n0 + tx + ${TILE} * j;
            if (mo < ${p.m} && no < ${p.n}) {
              result[mo * ${p.n} + no] = acc[i][j];
            }
          }
        }
      }
    `,
  };
}

/** The `Conv2DBackpropInput` kernel: camflow's program for float32 NHWC, the stock kernel for the rest. */
export function convInputKernel(stock: tf.KernelConfig): tf.KernelConfig {
  return {
    kernelName: 'Conv2DBackpropInput',
    backendName: BACKEND,
    kernelFunc: (args: KernelArgs) => {
      const { dy, filter } = args.inputs as { dy: Info; filter: Info };
      const { inputShape, strides, pad, dataFormat, dimRoundingMode } = args.attrs as unknown as {
        inputShape: [number, number, number, number];
        strides: [number, number] | number;
        pad: 'valid' | 'same' | number | tf.backend_util.ExplicitPadding;
        dataFormat?: 'NHWC' | 'NCHW';
        dimRoundingMode?: 'floor' | 'round' | 'ceil';
      };
      if ((dataFormat !== undefined && dataFormat !== 'NHWC') || dy.dtype !== 'float32' || filter.dtype !== 'float32') return stock.kernelFunc(args) as Info;
      const info = tf.backend_util.computeConv2DInfo(inputShape, filter.shape as [number, number, number, number], strides, 1, pad, dimRoundingMode, false, 'channelsLast');
      const g: ConvInputGeometry = {
        batch: info.batchSize,
        h: info.inHeight,
        w: info.inWidth,
        ci: info.inChannels,
        oh: info.outHeight,
        ow: info.outWidth,
        co: info.outChannels,
        kh: info.filterHeight,
        kw: info.filterWidth,
        sh: info.strideHeight,
        sw: info.strideWidth,
        top: info.padInfo.top,
        left: info.padInfo.left,
      };
      if (g.batch * g.h * g.w * g.ci === 0) return stock.kernelFunc(args) as Info;
      return (args.backend as WebGpuBackend).runWebGPUProgram(convInputProgram(g, planConvInput(g)), [dy, filter], 'float32');
    },
  };
}
