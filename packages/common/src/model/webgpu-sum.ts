import * as tf from '@tensorflow/tfjs';
import { BACKEND, type Info, MAX_WORKGROUPS_PER_DIMENSION, type KernelArgs, TARGET_WORKGROUPS, type WebGpuBackend, type WebGpuProgram, runSplitReduction } from './webgpu-program.js';

/**
 * A faster `Sum` over leading axes for tfjs's WebGPU backend: the bias gradients of training.
 *
 * Each conv layer's bias gradient is dy summed over batch, height and width: `Sum` of an NHWC tensor over axes
 * [0, 1, 2]. The stock kernel transposes the tensor so the reduced axes come last (a full copy: 250 MB for the seed
 * net's first conv at b256), then reduces each of the C rows with one workgroup: 16–32 workgroups for millions of
 * terms each. On an H200 `Sum` took 11 of a seed step's 109 GPU-ms at b256 (`npm run bench:gpu`).
 *
 * Here the tensor is read in place as a matrix [rows, cols] (rows: the product of the reduced leading axes, cols:
 * the kept trailing ones) and summed down its columns, split like the filter gradient: workgroup (c, s) sums chunk s
 * of the rows for a tile of adjacent columns (neighbouring threads read neighbouring addresses), its threads striding
 * over the chunk's rows and meeting in workgroup memory; a second pass adds the chunks' partial sums. Any other
 * reduction (inner axes, non-float32) goes to the stock kernel.
 */

const THREADS = 256;
/** The least rows a thread sums in one chunk, so that a workgroup is worth launching. */
const MIN_ROWS_PER_THREAD = 8;

export interface ColumnSumPlan {
  rows: number;
  cols: number;
  /** Adjacent columns per workgroup (a power of two ≤ 64). */
  colsPerGroup: number;
  /** Threads per column: THREADS / colsPerGroup; they take every `rowPhases`-th row of the chunk. */
  rowPhases: number;
  /** Chunks of rows, one partial sum each. */
  splits: number;
  chunkRows: number;
}

/**
 * The rows × columns view of a sum of `shape` over `axes` when those are its leading axes and at least one axis is
 * kept (trailing), else null: `lead` reduced axes, `rows` their product, `cols` the kept axes' product. Empty tensors
 * give null; so does a sum over every axis (the stock kernel reads that in place already).
 */
export function leadingAxesView(shape: readonly number[], axes: readonly number[]): { lead: number; rows: number; cols: number } | null {
  const sorted = [...new Set(axes.map((a) => (a < 0 ? a + shape.length : a)))].sort((a, b) => a - b);
  if (sorted.length === 0 || sorted.length >= shape.length || sorted.some((a, i) => a !== i)) return null;
  const rows = shape.slice(0, sorted.length).reduce((a, b) => a * b, 1);
  const cols = shape.slice(sorted.length).reduce((a, b) => a * b, 1);
  return rows > 0 && cols > 0 ? { lead: sorted.length, rows, cols } : null;
}

/** How a column sum of [rows, cols] is split across workgroups (pure). */
export function planColumnSum(rows: number, cols: number): ColumnSumPlan {
  const colsPerGroup = Math.min(64, 2 ** Math.ceil(Math.log2(cols)));
  const rowPhases = THREADS / colsPerGroup;
  const colTiles = Math.ceil(cols / colsPerGroup);
  const wanted = Math.max(1, Math.min(Math.ceil(rows / (rowPhases * MIN_ROWS_PER_THREAD)), Math.ceil(TARGET_WORKGROUPS / colTiles)));
  const chunkRows = Math.ceil(rows / wanted);
  return { rows, cols, colsPerGroup, rowPhases, splits: Math.ceil(rows / chunkRows), chunkRows };
}

/** Partial column sums [S, cols]: workgroup (c, s) sums rows [s·chunk, (s+1)·chunk) of columns c·tile … (c+1)·tile. */
function columnPartialsProgram(p: ColumnSumPlan): WebGpuProgram {
  const colTiles = Math.ceil(p.cols / p.colsPerGroup);
  return {
    variableNames: ['x'],
    outputShape: [p.splits, p.cols],
    shaderKey: `camflowColumnSum_${p.rows}_${p.cols}_${p.colsPerGroup}_${p.splits}_${p.chunkRows}`,
    dispatchLayout: { x: [1], y: [0] },
    // Column tiles along x, folded into z past the per-dimension limit (more than 64 × 65,535 kept elements).
    dispatch: [Math.min(colTiles, MAX_WORKGROUPS_PER_DIMENSION), p.splits, Math.ceil(colTiles / MAX_WORKGROUPS_PER_DIMENSION)],
    workgroupSize: [THREADS, 1, 1],
    // The tree's loop runs a constant count and every thread reaches each barrier (uniform control flow).
    getUserCode: () => `
      var<workgroup> part : array<f32, ${THREADS}>;
      fn main() {
        _ = uniforms.outShape; // the backend binds its uniform buffer to every program: keep it in the layout
        let t = i32(localId.x);
        let tile = i32(workgroupId.z) * ${MAX_WORKGROUPS_PER_DIMENSION} + i32(workgroupId.x);
        let col = tile * ${p.colsPerGroup} + t % ${p.colsPerGroup};
        let phase = t / ${p.colsPerGroup};
        let split = i32(workgroupId.y);
        let rEnd = min((split + 1) * ${p.chunkRows}, ${p.rows});
        var s = 0.0;
        if (col < ${p.cols}) {
          for (var r = split * ${p.chunkRows} + phase; r < rEnd; r = r + ${p.rowPhases}) {
            s = s + x[r * ${p.cols} + col];
          }
        }
        part[t] = s;
        workgroupBarrier();
        for (var h = ${p.rowPhases / 2}; h > 0; h = h / 2) {
          if (phase < h) {
            part[t] = part[t] + part[t + h * ${p.colsPerGroup}];
          }
          workgroupBarrier();
        }
        if (phase == 0 && col < ${p.cols}) {
          result[split * ${p.cols} + col] = part[t];
        }
      }
    `,
  };
}

/** The `Sum` kernel: camflow's column sum for float32 sums over leading axes, the stock kernel for the rest. */
export function columnSumKernel(stock: tf.KernelConfig): tf.KernelConfig {
  return {
    kernelName: 'Sum',
    backendName: BACKEND,
    kernelFunc: (args: KernelArgs) => {
      const { x } = args.inputs as { x: Info };
      const { axis, keepDims } = args.attrs as unknown as { axis: number | number[]; keepDims: boolean };
      const axes = tf.util.parseAxisParam(axis, x.shape);
      const view = x.dtype === 'float32' ? leadingAxesView(x.shape, axes) : null;
      if (!view) return stock.kernelFunc(args) as Info;
      const kept = x.shape.slice(view.lead);
      const outShape = keepDims ? tf.backend_util.expandShapeToKeepDim(kept, axes) : kept;
      const plan = planColumnSum(view.rows, view.cols);
      return runSplitReduction(args.backend as WebGpuBackend, columnPartialsProgram(plan), [x], outShape, view.cols, plan.splits);
    },
  };
}
