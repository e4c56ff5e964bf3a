import { existsSync, readdirSync } from 'node:fs';

/**
 * WebGPU from Node through Dawn (the `webgpu` npm package ships its binary): one adapter per process, found once.
 *
 * Dawn runs on Vulkan. Without a GPU, Mesa's lavapipe (≥ 24) gives a software adapter ("llvmpipe"): real WebGPU
 * code paths, on the CPU. `auto` choices skip software adapters (the CPU rungs are faster); a pinned `webgpu`
 * (TF_BACKEND / CAM_EXECUTION_PROVIDERS) takes whatever adapter there is.
 */

export interface WebGpuAdapter {
  /** What Dawn says the adapter is, e.g. "NVIDIA H200" or "llvmpipe: Mesa 25.0.7 (software)". */
  description: string;
  vendor: string;
  /** A CPU rasteriser (lavapipe / llvmpipe, SwiftShader) rather than a GPU. */
  software: boolean;
}

export type WebGpuProbe = { ok: true; adapter: WebGpuAdapter } | { ok: false; reason: string };

const SOFTWARE = /llvmpipe|lavapipe|swiftshader|software/i;

/** Pure: is an adapter with this description a software rasteriser? */
export function isSoftwareAdapter(description: string, vendor = ''): boolean {
  return SOFTWARE.test(description) || SOFTWARE.test(vendor);
}

/**
 * Whether this host has a GPU device node at all (NVIDIA's, or a DRM render node). Without one, the only adapter
 * Dawn could find is a software one, so `auto` ladders skip the probe (and Dawn's start-up chatter on stderr).
 */
export function gpuDevicePresent(): boolean {
  if (existsSync('/dev/nvidiactl') || existsSync('/dev/nvidia0')) return true;
  try {
    return readdirSync('/dev/dri').some((n) => n.startsWith('renderD'));
  } catch {
    return false;
  }
}

let probe: Promise<WebGpuProbe> | undefined;

/**
 * Install `navigator.gpu` from Dawn (before `@tensorflow/tfjs-backend-webgpu` is imported: it registers itself only
 * when `navigator.gpu` exists) and request an adapter. Memoised; never throws.
 */
export function probeWebGpu(): Promise<WebGpuProbe> {
  return (probe ??= (async (): Promise<WebGpuProbe> => {
    try {
      const dawn = await import('webgpu');
      const g = globalThis as Record<string, unknown>;
      if (!(g.navigator as { gpu?: unknown } | undefined)?.gpu) {
        Object.assign(globalThis, dawn.globals);
        // Node ≥ 21 has a read-only `navigator`; Node 20 has none.
        const gpu = dawn.create([]);
        if (g.navigator) Object.defineProperty(g.navigator, 'gpu', { value: gpu, configurable: true });
        else g.navigator = { gpu };
      }
      const gpu = (g.navigator as { gpu: GPU }).gpu;
      const adapter = await gpu.requestAdapter({ powerPreference: 'high-performance' });
      if (!adapter) return { ok: false, reason: 'no WebGPU adapter (no Vulkan driver: install the GPU driver, or mesa-vulkan-drivers ≥ 24 for a software one)' };
      const info = adapter.info;
      const description = [info.description, info.device].filter(Boolean).join(' ') || info.vendor || 'unknown adapter';
      return { ok: true, adapter: { description, vendor: info.vendor ?? '', software: isSoftwareAdapter(description, info.vendor ?? '') } };
    } catch (error) {
      return { ok: false, reason: `webgpu: ${(error as Error).message.split('\n')[0]}` };
    }
  })());
}

interface GPU {
  requestAdapter(options?: { powerPreference?: string }): Promise<{ info: { description?: string; device?: string; vendor?: string } } | null>;
}
