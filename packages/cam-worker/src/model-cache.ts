import {
  OrtCamEngine,
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
} from '@camflow/common';

export interface EngineOptions {
  kind: 'onnx' | 'tfjs';
  threads?: number;
  providers?: string | undefined;
}

export interface LoadedModel {
  manifest: ModelManifest;
  engine: CamEngine;
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
  ) {}

  get(version: string): Promise<LoadedModel> {
    let entry = this.loaded.get(version);
    if (entry) {
      // Refresh recency.
      this.loaded.delete(version);
      this.loaded.set(version, entry);
      return entry;
    }
    entry = this.load(version);
    entry.catch(() => this.loaded.delete(version));
    this.loaded.set(version, entry);
    while (this.loaded.size > this.capacity) {
      const oldest = this.loaded.keys().next().value as string;
      const evicted = this.loaded.get(oldest)!;
      this.loaded.delete(oldest);
      evicted.then((m) => m.engine.dispose()).catch(() => undefined);
    }
    return entry;
  }

  private async load(version: string): Promise<LoadedModel> {
    const started = performance.now();
    const manifest = await getModelManifest(this.store, version);
    const [modelJson, weights] = await Promise.all([
      this.store.getJson<ModelFiles['modelJson']>(keys.modelFile(version, 'model.json')),
      this.store.get(keys.modelFile(version, 'weights.bin')),
    ]);
    const model = await deserializeModel({ modelJson, weights });
    let engine: CamEngine = new TfjsCamEngine(model);
    if (this.engine.kind === 'onnx') {
      const onnxBytes = await this.store.getIfExists(keys.modelFile(version, 'model.onnx'));
      if (onnxBytes) {
        const tfjs = engine as TfjsCamEngine;
        engine = await OrtCamEngine.create(onnxBytes, tfjs.inputSize, tfjs.numClasses, tfjs.classifierWeights, {
          threads: this.engine.threads ?? 0,
          ...(this.engine.providers ? { providers: await chooseExecutionProviders(this.engine.providers) } : {}),
          log: this.log,
        });
        tfjs.dispose();
      } else {
        this.log.warn({ modelVersion: version }, 'model has no model.onnx (published before ONNX export): serving it with tfjs');
      }
    }
    this.log.info({ modelVersion: version, preset: manifest.preset, engine: engine.name, ms: Math.round(performance.now() - started) }, 'model loaded');
    return { manifest, engine };
  }

  dispose(): void {
    for (const entry of this.loaded.values()) entry.then((m) => m.engine.dispose()).catch(() => undefined);
    this.loaded.clear();
  }
}
