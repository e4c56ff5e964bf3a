export * from './sources.js';
export * from './store-image.js';
export * from './datasets.js';
export * from './submit.js';
export * from './status.js';
export * from './http/server.js';
