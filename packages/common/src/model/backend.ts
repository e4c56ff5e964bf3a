import { existsSync } from 'node:fs';
import { execFileSync } from 'node:child_process';
import * as tf from '@tensorflow/tfjs';
import type { Logger } from 'pino';
import { registerWasmTrainingKernels } from './wasm-kernels.js';
import { gpuDevicePresent, probeWebGpu, type WebGpuAdapter } from './webgpu.js';
import { registerWebGpuTrainingKernels } from './webgpu-kernels.js';

import type { BackendPreference } from '../config.js';

export type { BackendPreference };

export interface BackendChoice {
  /** The tfjs backend name in use: `tensorflow` (tfjs-node or tfjs-node-gpu), `webgpu`, `wasm` or `cpu`. */
  backend: string;
  /** The package that provided it. */
  provider: string;
  /** The device it computes on: the GPU's name, "CPU", or the WebGPU adapter's description. */
  device: string;
  /** Why the earlier rungs of the ladder were skipped. */
  skipped: string[];
}

let chosen: BackendChoice | undefined;

// The backends camflow depends on are imported by literal names, so that a bundler (scripts/gpu-host-pack.sh's
// esbuild) carries them in the bundle with the one tfjs-core they register into; tfjs-node(-gpu) are optional and
// stay run-time imports.
const bundledBackends: Record<string, () => Promise<unknown>> = {
  '@tensorflow/tfjs-backend-webgpu': () => import('@tensorflow/tfjs-backend-webgpu'),
  '@tensorflow/tfjs-backend-wasm': () => import('@tensorflow/tfjs-backend-wasm'),
};

async function tryImport(name: string): Promise<string | undefined> {
  try {
    await (bundledBackends[name] ?? (() => import(name)))();
    return undefined;
  } catch (error) {
    // Not installed is the common case (an optional package): said so, without the resolver's paths.
    if ((error as { code?: string }).code === 'ERR_MODULE_NOT_FOUND' && (error as Error).message.includes(`'${name}'`)) return `${name}: not installed`;
    return `${name}: ${(error as Error).message.split('\n')[0]}`;
  }
}

/**
 * tfjs-node-gpu 4.22 is built on libtensorflow 2.9.1 for CUDA 11.2 / cuDNN 8.1; on any other host it silently
 * computes on the CPU. Claim it only when an NVIDIA device and those exact libraries are present.
 */
export function cuda11Missing(): string | undefined {
  if (!existsSync('/dev/nvidiactl') && !existsSync('/dev/nvidia0')) return 'no NVIDIA device';
  let libs = '';
  try {
    libs = execFileSync('ldconfig', ['-p'], { encoding: 'utf8', stdio: ['ignore', 'pipe', 'ignore'] });
  } catch {
    /* no ldconfig: rely on LD_LIBRARY_PATH below */
  }
  const dirs = (process.env.LD_LIBRARY_PATH ?? '').split(':').filter(Boolean);
  const has = (lib: string) => libs.includes(lib) || dirs.some((d) => existsSync(`${d}/${lib}`));
  const missing = ['libcudart.so.11.0', 'libcudnn.so.8'].filter((l) => !has(l));
  return missing.length ? `CUDA 11 / cuDNN 8 libraries not found (${missing.join(', ')}); tfjs-node-gpu would run on the CPU` : undefined;
}

/**
 * Choose the TensorFlow.js backend once per process and log the choice with its device:
 * tfjs-node-gpu (only with a real GPU and its CUDA 11 libraries) → webgpu (Dawn; a hardware adapter under `auto`)
 * → tfjs-node (CPU) → wasm (with camflow's training kernels) → cpu. `preference` pins a rung (`TF_BACKEND`);
 * a pinned rung that cannot start falls down the rest of the ladder, and says why.
 */
export async function initBackend(preference: BackendPreference = 'auto', log?: Logger): Promise<BackendChoice> {
  if (chosen) return chosen;
  const skipped: string[] = [];
  const attempt = async (backend: string, provider: string, device: string): Promise<boolean> => {
    try {
      if (!(await tf.setBackend(backend))) {
        skipped.push(`${provider}: backend ${backend} failed to initialise`);
        return false;
      }
      await tf.ready();
      chosen = { backend, provider, device, skipped };
      return true;
    } catch (error) {
      skipped.push(`${provider}: ${(error as Error).message.split('\n')[0]}`);
      return false;
    }
  };
  const from = (rung: BackendPreference) => preference === 'auto' || preference === rung;
  const below = (rungs: BackendPreference[]) => preference === 'auto' || rungs.includes(preference);

  if (from('tensorflow')) {
    const why = cuda11Missing();
    if (why) skipped.push(`@tensorflow/tfjs-node-gpu: ${why}`);
    else {
      const failure = await tryImport('@tensorflow/tfjs-node-gpu');
      if (failure) skipped.push(failure);
      else await attempt('tensorflow', '@tensorflow/tfjs-node-gpu', 'CUDA GPU');
    }
  }
  if (!chosen && preference === 'auto' && !gpuDevicePresent()) skipped.push('webgpu: no GPU device (/dev/nvidia*, /dev/dri/renderD*); TF_BACKEND=webgpu probes anyway');
  else if (!chosen && from('webgpu')) {
    const probe = await probeWebGpu();
    if (!probe.ok) skipped.push(`webgpu: ${probe.reason}`);
    else if (probe.adapter.software && preference !== 'webgpu') skipped.push(`webgpu: adapter "${probe.adapter.description}" is software (TF_BACKEND=webgpu uses it anyway)`);
    else if (await webgpuBackend(probe.adapter, skipped)) await attempt('webgpu', '@tensorflow/tfjs-backend-webgpu (Dawn)', probe.adapter.description);
  }
  if (!chosen && below(['tensorflow', 'webgpu'])) {
    const failure = await tryImport('@tensorflow/tfjs-node');
    if (failure) skipped.push(failure);
    else await attempt('tensorflow', '@tensorflow/tfjs-node', 'CPU');
  }
  if (!chosen && below(['tensorflow', 'webgpu', 'wasm'])) {
    const failure = await tryImport('@tensorflow/tfjs-backend-wasm');
    if (failure === undefined) {
      registerWasmTrainingKernels();
      await attempt('wasm', '@tensorflow/tfjs-backend-wasm', 'CPU (1 thread)');
    } else skipped.push(failure);
  }
  if (!chosen) await attempt('cpu', '@tensorflow/tfjs (pure JS)', 'CPU');
  log?.info({ backend: chosen!.backend, provider: chosen!.provider, device: chosen!.device, skipped: chosen!.skipped }, 'tensorflow.js backend chosen');
  return chosen!;
}

async function webgpuBackend(adapter: WebGpuAdapter, skipped: string[]): Promise<boolean> {
  const failure = await tryImport('@tensorflow/tfjs-backend-webgpu');
  if (failure) {
    skipped.push(failure);
    return false;
  }
  if (!tf.findBackendFactory('webgpu')) {
    skipped.push(`webgpu: tfjs-backend-webgpu did not register (adapter ${adapter.description})`);
    return false;
  }
  registerWebGpuTrainingKernels();
  return true;
}

/**
 * Read every weight of `model` to the CPU asynchronously, so the synchronous reads of export and publication
 * (`dataSync`) find them cached: the webgpu backend cannot read synchronously in Node (it has no OffscreenCanvas).
 */
export async function cacheWeightsOnCpu(model: tf.LayersModel): Promise<void> {
  await Promise.all(model.weights.map((w) => w.read().data()));
}

export { tf };
