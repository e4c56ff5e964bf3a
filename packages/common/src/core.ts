// `@camflow/common/core`: everything but the model runtimes (tfjs, ONNX Runtime, WebGPU) and the synthetic-data
// generator, so a process that never runs a model (the API, `submit`, `status`) does not load them.
export * from './errors.js';
export * from './validate.js';
export * from './suggest.js';
export * from './config.js';
export * from './logger.js';
export * from './cam/index.js';
export * from './images/index.js';
export * from './storage/keys.js';
export * from './storage/object-store.js';
export * from './storage/local-file.js';
export * from './queues/index.js';
export * from './dataset/manifest.js';
export * from './dataset/store.js';
export * from './models/registry.js';
export * from './dev/index.js';
export * from './screening/operating-point.js';
export * from './eval/classification.js';
export * from './eval/results.js';
export * from './eval/stain.js';
export * from './eval/stain-pointing.js';
export * from './fields/index.js';
export * from './html.js';
export * from './results/export.js';
export * from './metrics.js';
export * from './webhook.js';
export * from './telemetry.js';
