export * from './fit.js';
export * from './split.js';
export * from './publish.js';
export * from './train-job.js';
export * from './worker.js';
export * from './checkpoint.js';
