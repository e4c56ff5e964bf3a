import { existsSync } from 'node:fs';
import type { InferenceSession as OrtSession } from 'onnxruntime-node';
import type { Logger } from 'pino';
import { CamflowError } from '../errors.js';
import type { CamEngine, Prediction } from './engine.js';
import { ONNX_FEATURES, ONNX_INPUT, ONNX_LOGITS } from './onnx-export.js';

type Ort = typeof import('onnxruntime-node');
let ortModule: Promise<Ort> | undefined;
const loadOrt = () => (ortModule ??= import('onnxruntime-node'));

/**
 * Execution providers to ask ONNX Runtime for: CUDA (and TensorRT) when their binaries are installed and an NVIDIA
 * device is present, then CPU. `CAM_EXECUTION_PROVIDERS` (comma-separated) overrides.
 */
export async function chooseExecutionProviders(override?: string): Promise<string[]> {
  if (override) return override.split(',').map((s) => s.trim()).filter(Boolean);
  const ort = await loadOrt();
  const gpu = existsSync('/dev/nvidia0') || existsSync('/dev/nvidiactl');
  const available = new Set(ort.listSupportedBackends().filter((b) => b.bundled !== false || gpu).map((b) => b.name));
  const providers: string[] = [];
  if (gpu && available.has('tensorrt')) providers.push('tensorrt');
  if (gpu && available.has('cuda')) providers.push('cuda');
  providers.push('cpu');
  return providers;
}

/** CAM engine on ONNX Runtime: the exported graph's `logits` and channels-last `features`. */
export class OrtCamEngine implements CamEngine {
  readonly name = 'onnxruntime';
  private constructor(
    private readonly ort: Ort,
    private readonly session: OrtSession,
    readonly inputSize: number,
    readonly numClasses: number,
    readonly classifierWeights: Float32Array,
    readonly providers: string[],
  ) {}

  /**
   * @param onnxBytes the exported `model.onnx`
   * @param classifierWeights the dense kernel `[channels][classes]` (from the same model)
   */
  static async create(onnxBytes: Uint8Array, inputSize: number, numClasses: number, classifierWeights: Float32Array, options: { threads?: number; providers?: string[]; log?: Logger } = {}): Promise<OrtCamEngine> {
    const ort = await loadOrt();
    const providers = options.providers ?? (await chooseExecutionProviders());
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
        options.log?.info({ providers: providers.slice(i), threads: options.threads ?? 'all cores' }, 'onnxruntime session created');
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
