import type * as tf from '@tensorflow/tfjs';

/** What camflow's WebGPU kernels share: tfjs-backend-webgpu's program interface and the partial-sums reduction. */

export type Info = tf.TensorInfo;
export type KernelArgs = { inputs: tf.NamedTensorInfoMap; backend: object; attrs?: tf.NamedAttrMap };

/** The part of tfjs-backend-webgpu's program interface (`WebGPUProgram`) these kernels use. */
export interface WebGpuProgram {
  variableNames: string[];
  outputShape: number[];
  shaderKey: string;
  dispatchLayout: { x: number[]; y?: number[]; z?: number[] };
  dispatch: [number, number, number];
  workgroupSize: [number, number, number];
  size?: boolean;
  getUserCode(): string;
}
export interface WebGpuBackend extends tf.KernelBackend {
  runWebGPUProgram(program: WebGpuProgram, inputs: Info[], outputDtype: tf.DataType): Info;
}

export const BACKEND = 'webgpu';
/** WebGPU's default limit on workgroups per dispatch dimension (`maxComputeWorkgroupsPerDimension`). */
export const MAX_WORKGROUPS_PER_DIMENSION = 65535;
/** Workgroups to aim for per dispatch: an H100 has 132 multiprocessors, a few thousand keep every one busy. */
export const TARGET_WORKGROUPS = 2048;

/**
 * The second pass of a split reduction: output element i = Σ over the `splits` partial arrays [S, size] of their
 * element i, one thread per output element; the output takes `outputShape` (size elements).
 */
export function sumPartialsProgram(outputShape: number[], size: number, splits: number): WebGpuProgram {
  return {
    variableNames: ['partials'],
    outputShape,
    shaderKey: `camflowSumPartials_${splits}_${size}`,
    dispatchLayout: { x: outputShape.map((_, i) => i) },
    dispatch: [Math.ceil(size / 64), 1, 1],
    workgroupSize: [64, 1, 1],
    size: true,
    getUserCode: () => `
      fn main(index : i32) {
        if (index < uniforms.size) {
          var s = 0.0;
          for (var z = 0; z < ${splits}; z = z + 1) {
            s = s + partials[z * ${size} + index];
          }
          setOutputAtIndex(index, s);
        }
      }
    `,
  };
}

/** Run a partials program, then sum its partials into `outputShape`; the partials are freed whatever happens. */
export function runSplitReduction(backend: WebGpuBackend, partialsProgram: WebGpuProgram, inputs: Info[], outputShape: number[], size: number, splits: number): Info {
  const partials = backend.runWebGPUProgram(partialsProgram, inputs, 'float32');
  try {
    return backend.runWebGPUProgram(sumPartialsProgram(outputShape, size, splits), [partials], 'float32');
  } finally {
    backend.disposeData(partials.dataId);
  }
}
