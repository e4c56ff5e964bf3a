export * from './prng.js';
export * from './cells.js';
export * from './write.js';
export * from './fields.js';
