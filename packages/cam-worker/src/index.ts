export * from './model-cache.js';
export * from './localize-image.js';
export * from './chunk.js';
export { planRegions } from './field.js';
export * from './finalize.js';
export * from './worker.js';
