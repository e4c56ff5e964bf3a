export * from './decode.js';
export * from './png-rgb.js';
export * from './input-pack.js';
export * from './deep-zoom.js';
export * from './mask.js';
