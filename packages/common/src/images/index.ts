export * from './decode.js';
export * from './png-rgb.js';
