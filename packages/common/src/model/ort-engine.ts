import { existsSync } from 'node:fs';
import { createRequire } from 'node:module';
import { dirname, join } from 'node:path';
import type { InferenceSession as OrtSession } from 'onnxruntime-node';
import type { Logger } from 'pino';
import { CamflowError, InvalidParameterError } from '../errors.js';
import { gpuDevicePresent, probeWebGpu } from './webgpu.js';
import { EXECUTION_PROVIDERS, type ExecutionProvider } from '../config.js';
import type { CamEngine, Prediction } from './engine.js';
import { ONNX_FEATURES, ONNX_INPUT, ONNX_LOGITS } from './onnx-export.js';

type Ort = typeof import('onnxruntime-node');
let ortModule: Promise<Ort> | undefined;
const loadOrt = () => (ortModule ??= import('onnxruntime-node'));

/** Providers that run on a GPU: they want large batches (hundreds of cells per run). */
export const GPU_PROVIDERS: ReadonlySet<string> = new Set(['tensorrt', 'cuda', 'webgpu']);

/** Pure: parse `CAM_EXECUTION_PROVIDERS` ("webgpu,cpu"); unknown names fail naming the variable. */
export function parseExecutionProviders(value: string): ExecutionProvider[] {
  const names = value.split(',').map((s) => s.trim().toLowerCase()).filter(Boolean);
  if (names.length === 0) throw new InvalidParameterError('CAM_EXECUTION_PROVIDERS', `a comma-separated list of ${EXECUTION_PROVIDERS.join(', ')}`, value);
  for (const n of names) if (!(EXECUTION_PROVIDERS as readonly string[]).includes(n)) throw new InvalidParameterError('CAM_EXECUTION_PROVIDERS', `a comma-separated list of ${EXECUTION_PROVIDERS.join(', ')}`, value);
  return names as ExecutionProvider[];
}

/** Whether ORT's CUDA provider libraries were installed (`npm install --onnxruntime-node-install=cuda12`). */
export function cudaProvidersInstalled(): boolean {
  try {
    const root = dirname(createRequire(import.meta.url).resolve('onnxruntime-node/package.json'));
    return existsSync(join(root, 'bin', 'napi-v6', process.platform, process.arch, 'libonnxruntime_providers_cuda.so'));
  } catch {
    return false;
  }
}

export interface ProviderChoice {
  providers: ExecutionProvider[];
  /** Why rungs above the first provider were left out. */
  skipped: string[];
}

/**
 * The execution-provider ladder: TensorRT / CUDA when an NVIDIA device and ORT's CUDA provider libraries are
 * present → WebGPU (Dawn inside ORT) when a hardware adapter is there → CPU. `CAM_EXECUTION_PROVIDERS` pins a list
 * (e.g. `webgpu` on a software adapter, for tests); CPU always closes the list so unsupported nodes can run.
 */
export async function chooseExecutionProviders(override?: string): Promise<ProviderChoice> {
  if (override) {
    const pinned = parseExecutionProviders(override);
    return { providers: pinned.includes('cpu') ? pinned : [...pinned, 'cpu'], skipped: [] };
  }
  const skipped: string[] = [];
  const providers: ExecutionProvider[] = [];
  const gpu = existsSync('/dev/nvidia0') || existsSync('/dev/nvidiactl');
  if (!gpu) skipped.push('tensorrt, cuda: no NVIDIA device');
  else if (!cudaProvidersInstalled()) skipped.push('tensorrt, cuda: ORT CUDA provider libraries not installed (npm install --onnxruntime-node-install=cuda12)');
  else providers.push('tensorrt', 'cuda');
  const probe = gpuDevicePresent() ? await probeWebGpu() : ({ ok: false, reason: 'no GPU device (/dev/nvidia*, /dev/dri/renderD*)' } as const);
  if (!probe.ok) skipped.push(`webgpu: ${probe.reason}`);
  else if (probe.adapter.software) skipped.push(`webgpu: adapter "${probe.adapter.description}" is software (CAM_EXECUTION_PROVIDERS=webgpu uses it anyway)`);
  else providers.push('webgpu');
  providers.push('cpu');
  return { providers, skipped };
}

/** CAM engine on ONNX Runtime: the exported graph's `logits` and channels-last `features`. */
export class OrtCamEngine implements CamEngine {
  readonly name = 'onnxruntime';
  /** `onnxruntime/<provider>`: the provider that took the session (the rest of the list takes unsupported nodes). */
  readonly device: string;
  readonly preferredBatch: number;
  private constructor(
    private readonly ort: Ort,
    private readonly session: OrtSession,
    readonly inputSize: number,
    readonly numClasses: number,
    readonly classifierWeights: Float32Array,
    readonly providers: string[],
  ) {
    this.device = `onnxruntime/${providers[0]}`;
    this.preferredBatch = GPU_PROVIDERS.has(providers[0]!) ? 256 : 32;
  }

  /**
   * @param onnxBytes the exported `model.onnx`
   * @param classifierWeights the dense kernel `[channels][classes]` (from the same model)
   */
  static async create(onnxBytes: Uint8Array, inputSize: number, numClasses: number, classifierWeights: Float32Array, options: { threads?: number; providers?: string[]; log?: Logger } = {}): Promise<OrtCamEngine> {
    const ort = await loadOrt();
    let providers = options.providers;
    if (!providers) {
      const choice = await chooseExecutionProviders();
      providers = choice.providers;
      if (choice.skipped.length) options.log?.info({ skipped: choice.skipped }, 'onnxruntime providers left out');
    }
    let session: OrtSession | undefined;
    const tried: string[] = [];
    // Fall down the provider list: a CUDA build without a working driver must not stop a worker.
    for (let i = 0; i < providers.length && !session; i++) {
      try {
        session = await ort.InferenceSession.create(onnxBytes, {
          executionProviders: providers.slice(i),
          intraOpNumThreads: options.threads ?? 0,
          interOpNumThreads: 1,
          graphOptimizationLevel: 'all',
        });
        options.log?.info({ providers: providers.slice(i), threads: options.threads ?? 'all cores', tried }, 'onnxruntime session created');
        return new OrtCamEngine(ort, session, inputSize, numClasses, classifierWeights, providers.slice(i));
      } catch (error) {
        tried.push(`${providers[i]}: ${(error as Error).message}`);
      }
    }
    throw new CamflowError('ORT', `no ONNX Runtime execution provider worked: ${tried.join('; ')}`);
  }

  async predict(inputs: Uint8Array[]): Promise<Prediction[]> {
    if (inputs.length === 0) return [];
    const s = this.inputSize;
    const per = s * s * 3;
    const data = new Uint8Array(inputs.length * per);
    inputs.forEach((img, i) => {
      if (img.length !== per) throw new CamflowError('ORT', `input ${i} has ${img.length} bytes, expected ${per}`);
      data.set(img, i * per);
    });
    const out = await this.session.run({ [ONNX_INPUT]: new this.ort.Tensor('uint8', data, [inputs.length, s, s, 3]) });
    const logits = out[ONNX_LOGITS]!.data as Float32Array;
    const feats = out[ONNX_FEATURES]!;
    const [, h, w, k] = feats.dims as number[];
    const fd = feats.data as Float32Array;
    const fper = h! * w! * k!;
    return inputs.map((_, i) => ({
      logits: logits.slice(i * this.numClasses, (i + 1) * this.numClasses),
      features: { data: fd.slice(i * fper, (i + 1) * fper), height: h!, width: w!, channels: k! },
    }));
  }

  dispose(): void {
    void this.session.release();
  }
}
