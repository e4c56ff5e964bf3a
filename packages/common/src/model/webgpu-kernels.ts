import * as tf from '@tensorflow/tfjs';
import { CamflowError } from '../errors.js';
import { convInputKernel } from './webgpu-conv-input.js';
import { columnSumKernel } from './webgpu-sum.js';
import { BACKEND, type Info, type KernelArgs, TARGET_WORKGROUPS, type WebGpuBackend, type WebGpuProgram, runSplitReduction } from './webgpu-program.js';

/**
 * A faster `Conv2DBackpropFilter` for tfjs's WebGPU backend: one WGSL split-K matrix product and one reduction.
 *
 * The filter gradient is a matrix product with a huge inner dimension:
 *
 *   dW[m, n] = Σ_r  A[m, r] · dy[r, n]      m = (kh, kw, ci) ∈ KH·KW·Ci,  n = co,  r = (b, y, x) ∈ B·OH·OW
 *   A[m, r]  = x[b, y·sh + kh − top, x·sw + kw − left, ci]   (0 in the padding: im2col, gathered on the fly)
 *
 * The stock kernel runs one thread per filter element (a few thousand), each looping over all of r (~460,000 for
 * the seed net's conv2 at b32), so most of the GPU idles: on an H100 it took 440 ms of a 450 ms seed step (b32,
 * `npm run bench:gpu`). camflow's first replacement, composed of the backend's own kernels (per filter offset a
 * slice, a batched matmul and a sum: ~100 dispatches per convolution), took that to 59 ms, still 85 % of the GPU
 * time: each matmul's output is tiny ([Ci, Co]) and its inner dimension one image's pixels.
 * Here r is split into S chunks so that the GPU gets thousands of workgroups: workgroup (tn, tm, s) computes a
 * 16×16 tile of dW over chunk s with both operands staged in workgroup memory and writes partial sums [S, M, N];
 * a second pass sums over S. Two dispatches per convolution. That tiled program ran dW at ~4 TFLOP/s on an H200
 * (44 of 109 GPU-ms of a seed step at b256). The default is now its register-blocked form (`blockedPartialsProgram`:
 * 64 × 32 tiles, 4 × 2 outputs per thread): 2.3–3.0× the tiled one on lavapipe (`BENCH_GPU_PARTS=kernels`), not yet
 * timed on a GPU; `useWebGpuConvFilterKernel('camflow-tiled')` selects the tiled one. Both are checked against the
 * cpu backend's gradients in `test/unit/webgpu.test.ts` (on lavapipe where no GPU is present).
 *
 * `registerWebGpuTrainingKernels` also installs camflow's `Sum` over leading axes (the bias gradients:
 * `webgpu-sum.ts`); camflow's register-blocked `Conv2DBackpropInput` (`webgpu-conv-input.ts`) is there to be
 * switched on (`useWebGpuConvInputKernel`) if a GPU run shows it faster than the stock one.
 */

type PadSpec = 'valid' | 'same' | number | tf.backend_util.ExplicitPadding;

const TILE = 16;
/** The shortest chunk of r worth a workgroup, in tiles of 16. */
const MIN_CHUNK_TILES = 16;

export interface FilterGradPlan {
  /** Filter elements KH·KW·Ci. */
  m: number;
  /** Output channels. */
  n: number;
  /** Terms per element, B·OH·OW. */
  r: number;
  /** Chunks of r, one partial sum each. */
  splits: number;
  /** Tiles of 16 terms per chunk. */
  chunkTiles: number;
}

/**
 * How the r terms of a filter gradient are split across workgroups (pure), for output tiles of `tileM × tileN`
 * (16 × 16 for the tiled kernel, 64 × 32 for the register-blocked one).
 */
export function planFilterGrad(m: number, n: number, r: number, tileM = TILE, tileN = TILE): FilterGradPlan {
  const tilesMN = Math.ceil(m / tileM) * Math.ceil(n / tileN);
  const rTiles = Math.ceil(r / TILE);
  const wanted = Math.max(1, Math.min(Math.ceil(rTiles / MIN_CHUNK_TILES), Math.ceil(TARGET_WORKGROUPS / tilesMN)));
  const chunkTiles = Math.ceil(rTiles / wanted);
  return { m, n, r, splits: Math.ceil(rTiles / chunkTiles), chunkTiles };
}

interface ConvGeometry {
  kh: number;
  kw: number;
  ci: number;
  co: number;
  h: number;
  w: number;
  oh: number;
  ow: number;
  sh: number;
  sw: number;
  top: number;
  left: number;
}

/**
 * A partial-sums program of dW over `tileM × tileN` output tiles per 16 × 16 workgroup: the program's frame and the
 * shader's prologue (thread and tile indices, the workgroup's chunk of r: `rBegin`, `rEnd`) around a kernel's own
 * workgroup arrays and body. Geometry and plan are baked into the shader as constants.
 */
function partialSumsProgram(name: string, g: ConvGeometry, plan: FilterGradPlan, tileM: number, tileN: number, shared: string, body: string): WebGpuProgram {
  const { m, n, r, splits, chunkTiles } = plan;
  const chunk = chunkTiles * TILE;
  return {
    variableNames: ['x', 'dy'],
    outputShape: [splits, m, n],
    shaderKey: `${name}_${Object.values(g).join('_')}_${splits}_${chunkTiles}`,
    dispatchLayout: { x: [2], y: [1], z: [0] },
    dispatch: [Math.ceil(n / tileN), Math.ceil(m / tileM), splits],
    workgroupSize: [TILE, TILE, 1],
    // Loops run a constant count (barriers need uniform control flow); loads past the chunk's end read 0.
    getUserCode: () => `${shared}
      fn main() {
        _ = uniforms.outShape; // the backend binds its uniform buffer to every program: keep it in the layout
        let tx = i32(localId.x);
        let ty = i32(localId.y);
        let n0 = i32(workgroupId.x) * ${tileN};
        let m0 = i32(workgroupId.y) * ${tileM};
        let split = i32(workgroupId.z);
        let rBegin = split * ${chunk};
        let rEnd = min(rBegin + ${chunk}, ${r});${body}`,
  };
}

/** Partial sums [S, M, N] of dW, one chunk of r per workgroup z. Geometry is baked into the shader as constants. */
function partialsProgram(g: ConvGeometry, plan: FilterGradPlan): WebGpuProgram {
  const { m, n, chunkTiles } = plan;
  return partialSumsProgram('camflowConvDW', g, plan, TILE, TILE, `
      var<workgroup> cfA : array<array<f32, ${TILE}>, ${TILE}>;
      var<workgroup> cfB : array<array<f32, ${TILE}>, ${TILE}>;`, `
        let mLoad = m0 + ty;
        let fkh = mLoad / ${g.kw * g.ci};
        let fkw = (mLoad % ${g.kw * g.ci}) / ${g.ci};
        let fci = mLoad % ${g.ci};
        var acc = 0.0;
        for (var t = 0; t < ${chunkTiles}; t = t + 1) {
          let r0 = rBegin + t * ${TILE};
          let ra = r0 + tx;
          var a = 0.0;
          if (ra < rEnd && mLoad < ${m}) {
            let b = ra / ${g.oh * g.ow};
            let p = ra % ${g.oh * g.ow};
            let iy = (p / ${g.ow}) * ${g.sh} + fkh - ${g.top};
            let ix = (p % ${g.ow}) * ${g.sw} + fkw - ${g.left};
            if (iy >= 0 && iy < ${g.h} && ix >= 0 && ix < ${g.w}) {
              a = x[((b * ${g.h} + iy) * ${g.w} + ix) * ${g.ci} + fci];
            }
          }
          cfA[tx][ty] = a;
          let rb = r0 + ty;
          let nb = n0 + tx;
          var bv = 0.0;
          if (rb < rEnd && nb < ${n}) {
            bv = dy[rb * ${n} + nb];
          }
          cfB[ty][tx] = bv;
          workgroupBarrier();
          for (var k = 0; k < ${TILE}; k = k + 1) {
            acc = acc + cfA[k][ty] * cfB[k][tx];
          }
          workgroupBarrier();
        }
        let mo = m0 + ty;
        let no = n0 + tx;
        if (mo < ${m} && no < ${n}) {
          result[(split * ${m} + mo) * ${n} + no] = acc;
        }
      }
    `);
}

/** The register-blocked kernel's output tile: 64 filter elements × 32 output channels per workgroup of 16 × 16. */
export const BLOCK_M = 64;
export const BLOCK_N = 32;

/**
 * The same partial sums as `partialsProgram`, register-blocked: each of the 16 × 16 threads computes 4 filter
 * elements × 2 output channels (rows `ty + 16i`, columns `tx + 16j` of a 64 × 32 tile), so per term of r a thread
 * reads 6 values from workgroup memory for 8 multiply-adds (the tiled kernel: 2 for 1), and each im2col value
 * gathered from x serves 32 output channels instead of 16. Chunks of r as `planFilterGrad(m, n, r, 64, 32)`.
 */
function blockedPartialsProgram(g: ConvGeometry, plan: FilterGradPlan): WebGpuProgram {
  const { m, n, chunkTiles } = plan;
  return partialSumsProgram('camflowConvDWBlocked', g, plan, BLOCK_M, BLOCK_N, `
      var<workgroup> bkA : array<array<f32, ${BLOCK_M}>, ${TILE}>;
      var<workgroup> bkB : array<array<f32, ${BLOCK_N}>, ${TILE}>;`, `
        // The four filter rows this thread gathers (and computes): (kh, kw, ci) of m0 + ty + 16i.
        var fkh : array<i32, 4>;
        var fkw : array<i32, 4>;
        var fci : array<i32, 4>;
        for (var i = 0; i < 4; i = i + 1) {
          let mm = m0 + ty + ${TILE} * i;
          fkh[i] = mm / ${g.kw * g.ci};
          fkw[i] = (mm % ${g.kw * g.ci}) / ${g.ci};
          fci[i] = mm % ${g.ci};
        }
        var acc : array<array<f32, 2>, 4>;
        for (var t = 0; t < ${chunkTiles}; t = t + 1) {
          let r0 = rBegin + t * ${TILE};
          // im2col: term ra = r0 + tx for the thread's four filter rows.
          let ra = r0 + tx;
          let b = ra / ${g.oh * g.ow};
          let p = ra % ${g.oh * g.ow};
          let oy = (p / ${g.ow}) * ${g.sh} - ${g.top};
          let ox = (p % ${g.ow}) * ${g.sw} - ${g.left};
          for (var i = 0; i < 4; i = i + 1) {
            let iy = oy + fkh[i];
            let ix = ox + fkw[i];
            var a = 0.0;
            if (ra < rEnd && m0 + ty + ${TILE} * i < ${m} && iy >= 0 && iy < ${g.h} && ix >= 0 && ix < ${g.w}) {
              a = x[((b * ${g.h} + iy) * ${g.w} + ix) * ${g.ci} + fci[i]];
            }
            bkA[tx][ty + ${TILE} * i] = a;
          }
          // dy: term rb = r0 + ty for the thread's two output channels.
          let rb = r0 + ty;
          for (var j = 0; j < 2; j = j + 1) {
            let nb = n0 + tx + ${TILE} * j;
            var v = 0.0;
            if (rb < rEnd && nb < ${n}) {
              v = dy[rb * ${n} + nb];
            }
            bkB[ty][tx + ${TILE} * j] = v;
          }
          workgroupBarrier();
          for (var k = 0; k < ${TILE}; k = k + 1) {
            let d0 = bkB[k][tx];
            let d1 = bkB[k][tx + ${TILE}];
            for (var i = 0; i < 4; i = i + 1) {
              let a = bkA[k][ty + ${TILE} * i];
              acc[i][0] = acc[i][0] + a * d0;
              acc[i][1] = acc[i][1] + a * d1;
            }
          }
          workgroupBarrier();
        }
        for (var i = 0; i < 4; i = i + 1) {
          let mo = m0 + ty + ${TILE} * i;
          for (var j = 0; j < 2; j = j + 1) {
            let no = n0 + tx + ${TILE} * j;
            if (mo < ${m} && no < ${n}) {
              result[(split * ${m} + mo) * ${n} + no] = acc[i][j];
            }
          }
        }
      }
    `);
}

let registered = false;
let stockConfig: tf.KernelConfig | undefined;
let camflowConfig: tf.KernelConfig | undefined;
/**
 * Which of camflow's partial-sum programs runs: `blocked` (4 × 2 outputs per thread, the default: 2.6× the tiled
 * program on lavapipe, not yet timed on a GPU) or `tiled` (one output per thread; the one timed on an H100 and an
 * H200).
 */
let filterProgram: 'tiled' | 'blocked' = 'blocked';

/**
 * Swap between camflow's kernels and tfjs's stock one (benchmarks measure each in one process): `camflow` (the
 * register-blocked program, the default), `camflow-tiled` (one output per thread), `stock`.
 */
export function useWebGpuConvFilterKernel(which: 'camflow' | 'camflow-tiled' | 'stock'): void {
  swapKernel('Conv2DBackpropFilter', () => (which === 'stock' ? stockConfig! : camflowConfig!));
  filterProgram = which === 'camflow-tiled' ? 'tiled' : 'blocked';
}

/** Register the webgpu backend's kernel `name` as `config()` (read after camflow's kernels are prepared). */
function swapKernel(name: string, config: () => tf.KernelConfig): void {
  registerWebGpuTrainingKernels();
  tf.unregisterKernel(name, BACKEND);
  tf.registerKernel(config());
}

let stockSum: tf.KernelConfig | undefined;
let camflowSum: tf.KernelConfig | undefined;
/** Swap between camflow's column `Sum` (sums over leading axes: bias gradients) and tfjs's stock one (benchmarks). */
export function useWebGpuSumKernel(which: 'camflow' | 'stock'): void {
  swapKernel('Sum', () => (which === 'stock' ? stockSum! : camflowSum!));
}

let stockInput: tf.KernelConfig | undefined;
let camflowInput: tf.KernelConfig | undefined;
/**
 * Swap between tfjs's stock input gradient (dX; its vec4 program, 4 channels × 2 pixels per thread, no workgroup
 * memory: the default) and camflow's register-blocked matrix product (`webgpu-conv-input.ts`). On lavapipe camflow's
 * is 4× slower (barriers cost a CPU dearly); on a GPU it is untimed: `bench:gpu` times both, and this is the switch.
 */
export function useWebGpuConvInputKernel(which: 'camflow' | 'stock'): void {
  swapKernel('Conv2DBackpropInput', () => (which === 'stock' ? stockInput! : camflowInput!));
}

/**
 * Replace the webgpu backend's Conv2DBackpropFilter and Sum once per process (and prepare camflow's
 * Conv2DBackpropInput, off by default: `useWebGpuConvInputKernel`); safe to call again.
 */
export function registerWebGpuTrainingKernels(): void {
  if (registered) return;
  const input = tf.getKernel('Conv2DBackpropInput', BACKEND);
  if (!input) throw new CamflowError('BACKEND', 'webgpu backend is not registered (import @tensorflow/tfjs-backend-webgpu first)');
  stockInput = { ...input };
  camflowInput = convInputKernel(stockInput);
  const sum = tf.getKernel('Sum', BACKEND);
  if (!sum) throw new CamflowError('BACKEND', 'webgpu backend is not registered (import @tensorflow/tfjs-backend-webgpu first)');
  stockSum = { ...sum };
  camflowSum = columnSumKernel(stockSum);
  tf.unregisterKernel('Sum', BACKEND);
  tf.registerKernel(camflowSum);
  const stock = tf.getKernel('Conv2DBackpropFilter', BACKEND);
  if (!stock) throw new CamflowError('BACKEND', 'webgpu backend is not registered (import @tensorflow/tfjs-backend-webgpu first)');
  stockConfig = { ...stock };
  tf.unregisterKernel('Conv2DBackpropFilter', BACKEND);
  tf.registerKernel((camflowConfig = {
    kernelName: 'Conv2DBackpropFilter',
    backendName: BACKEND,
    kernelFunc: (args: KernelArgs) => {
      const backend = args.backend as WebGpuBackend;
      const { x, dy } = args.inputs as { x: Info; dy: Info };
      const { strides, pad, dataFormat, dimRoundingMode, filterShape } = args.attrs as unknown as {
        strides: [number, number] | number;
        pad: PadSpec;
        dataFormat?: 'NHWC' | 'NCHW';
        dimRoundingMode?: 'floor' | 'round' | 'ceil';
        filterShape: [number, number, number, number];
      };
      if ((dataFormat !== undefined && dataFormat !== 'NHWC') || x.dtype !== 'float32') return stock.kernelFunc(args) as Info;
      const info = tf.backend_util.computeConv2DInfo(x.shape as [number, number, number, number], filterShape, strides, 1, pad, dimRoundingMode, false, 'channelsLast');
      const g: ConvGeometry = {
        kh: info.filterHeight,
        kw: info.filterWidth,
        ci: info.inChannels,
        co: info.outChannels,
        h: info.inHeight,
        w: info.inWidth,
        oh: info.outHeight,
        ow: info.outWidth,
        sh: info.strideHeight,
        sw: info.strideWidth,
        top: info.padInfo.top,
        left: info.padInfo.left,
      };
      const [m, n, r] = [g.kh * g.kw * g.ci, g.co, info.batchSize * g.oh * g.ow];
      const blocked = filterProgram === 'blocked';
      const plan = blocked ? planFilterGrad(m, n, r, BLOCK_M, BLOCK_N) : planFilterGrad(m, n, r);
      const program = blocked ? blockedPartialsProgram(g, plan) : partialsProgram(g, plan);
      return runSplitReduction(backend, program, [x, dy], filterShape, m * n, plan.splits);
    },
  }));
  registered = true;
}
