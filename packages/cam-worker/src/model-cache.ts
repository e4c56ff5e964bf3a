import {
  OrtCamEngine,
  cacheWeightsOnCpu,
  chooseExecutionProviders,
  deserializeModel,
  getModelManifest,
  keys,
  TfjsCamEngine,
  type CamEngine,
  type Logger,
  type ModelFiles,
  type ModelManifest,
  type ObjectStore,
  type Precision,
} from '@camflow/common';

export interface EngineOptions {
  kind: 'onnx' | 'tfjs';
  threads?: number;
  providers?: string | undefined;
}

export interface LoadedModel {
  manifest: ModelManifest;
  engine: CamEngine;
  /** The graph that runs: `int8` only when asked for, published, and served by ONNX Runtime. */
  precision: Precision;
}

/**
 * Model versions loaded on demand and kept (least recently used evicted). A batch names its pinned version, so
 * a new production model never changes a running batch; a newly announced version is preloaded.
 */
export class ModelCache {
  private readonly loaded = new Map<string, Promise<LoadedModel>>();

  constructor(
    private readonly store: ObjectStore,
    private readonly log: Logger,
    private readonly engine: EngineOptions = { kind: 'tfjs' },
    private readonly capacity = 3,
    /** Told of each model loaded, with the engine serving it (metrics). */
    private readonly onLoaded?: (version: string, engine: string) => void,
  ) {}

  get(version: string, precision: Precision = 'fp32'): Promise<LoadedModel> {
    const key = `${version}:${precision}`;
    let entry = this.loaded.get(key);
    if (entry) {
      // Refresh recency.
      this.loaded.delete(key);
      this.loaded.set(key, entry);
      return entry;
    }
    entry = this.load(version, precision);
    entry.catch(() => this.loaded.delete(key));
    this.loaded.set(key, entry);
    while (this.loaded.size > this.capacity) {
      const oldest = this.loaded.keys().next().value as string;
      const evicted = this.loaded.get(oldest)!;
      this.loaded.delete(oldest);
      evicted.then((m) => m.engine.dispose()).catch(() => undefined);
    }
    return entry;
  }

  private async load(version: string, wanted: Precision): Promise<LoadedModel> {
    const started = performance.now();
    const manifest = await getModelManifest(this.store, version);
    const [modelJson, weights] = await Promise.all([
      this.store.getJson<ModelFiles['modelJson']>(keys.modelFile(version, 'model.json')),
      this.store.get(keys.modelFile(version, 'weights.bin')),
    ]);
    const model = await deserializeModel({ modelJson, weights });
    await cacheWeightsOnCpu(model);
    let engine: CamEngine = new TfjsCamEngine(model);
    let precision: Precision = 'fp32';
    if (wanted === 'int8' && this.engine.kind !== 'onnx') this.log.warn({ modelVersion: version }, 'int8 asked for, but this worker serves with tfjs (CAM_ENGINE=tfjs): running fp32');
    if (this.engine.kind === 'onnx') {
      // The int8 graph when asked for and published (submit checks it is); otherwise the float graph.
      const int8Bytes = wanted === 'int8' ? await this.store.getIfExists(keys.modelFile(version, 'model.int8.onnx')) : undefined;
      if (wanted === 'int8' && !int8Bytes) this.log.warn({ modelVersion: version }, 'int8 asked for, but the model has no model.int8.onnx: running fp32');
      const onnxBytes = int8Bytes ?? (await this.store.getIfExists(keys.modelFile(version, 'model.onnx')));
      if (int8Bytes) precision = 'int8';
      if (onnxBytes) {
        const tfjs = engine as TfjsCamEngine;
        engine = await OrtCamEngine.create(onnxBytes, tfjs.inputSize, tfjs.numClasses, tfjs.classifierWeights, {
          threads: this.engine.threads ?? 0,
          ...(this.engine.providers ? { providers: (await chooseExecutionProviders(this.engine.providers)).providers } : {}),
          log: this.log,
        });
        tfjs.dispose();
      } else {
        this.log.warn({ modelVersion: version }, 'model has no model.onnx (published before ONNX export): serving it with tfjs');
      }
    }
    this.log.info({ modelVersion: version, preset: manifest.preset, engine: engine.device, precision, ms: Math.round(performance.now() - started) }, 'model loaded');
    this.onLoaded?.(version, engine.device);
    return { manifest, engine, precision };
  }

  dispose(): void {
    for (const entry of this.loaded.values()) entry.then((m) => m.engine.dispose()).catch(() => undefined);
    this.loaded.clear();
  }
}
