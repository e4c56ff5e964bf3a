import * as tf from '@tensorflow/tfjs';
import type { Logger } from 'pino';
import { registerWasmTrainingKernels } from './wasm-kernels.js';

export type BackendPreference = 'auto' | 'tensorflow' | 'wasm' | 'cpu';

export interface BackendChoice {
  /** The tfjs backend name in use: `tensorflow` (tfjs-node or tfjs-node-gpu), `wasm` or `cpu`. */
  backend: string;
  /** The package that provided it. */
  provider: string;
  /** Why the earlier rungs of the ladder were skipped. */
  skipped: string[];
}

let chosen: BackendChoice | undefined;

async function tryImport(name: string): Promise<string | undefined> {
  try {
    await import(name);
    return undefined;
  } catch (error) {
    return `${name}: ${(error as Error).message.split('\n')[0]}`;
  }
}

/**
 * Choose the TensorFlow.js backend once per process, down the ladder tfjs-node-gpu → tfjs-node → wasm → cpu,
 * and log the choice. `preference` pins a rung (`TF_BACKEND`).
 */
export async function initBackend(preference: BackendPreference = 'auto', log?: Logger): Promise<BackendChoice> {
  if (chosen) return chosen;
  const skipped: string[] = [];
  const attempt = async (backend: string, provider: string): Promise<boolean> => {
    try {
      if (!(await tf.setBackend(backend))) {
        skipped.push(`${provider}: backend ${backend} failed to initialise`);
        return false;
      }
      await tf.ready();
      chosen = { backend, provider, skipped };
      return true;
    } catch (error) {
      skipped.push(`${provider}: ${(error as Error).message}`);
      return false;
    }
  };
  if (preference === 'auto' || preference === 'tensorflow') {
    for (const pkg of ['@tensorflow/tfjs-node-gpu', '@tensorflow/tfjs-node']) {
      const failure = await tryImport(pkg);
      if (failure === undefined && (await attempt('tensorflow', pkg))) break;
      if (failure) skipped.push(failure);
    }
  }
  if (!chosen && (preference === 'auto' || preference === 'wasm' || preference === 'tensorflow')) {
    const failure = await tryImport('@tensorflow/tfjs-backend-wasm');
    if (failure === undefined) {
      registerWasmTrainingKernels();
      await attempt('wasm', '@tensorflow/tfjs-backend-wasm');
    } else skipped.push(failure);
  }
  if (!chosen) await attempt('cpu', '@tensorflow/tfjs (pure JS)');
  log?.info({ backend: chosen!.backend, provider: chosen!.provider, skipped: chosen!.skipped }, 'tensorflow.js backend chosen');
  return chosen!;
}

export { tf };
