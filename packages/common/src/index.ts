// `@camflow/common`: everything. Processes that run no model import `@camflow/common/core`.
export * from './core.js';
export * from './model/index.js';
export * from './synth/index.js';
