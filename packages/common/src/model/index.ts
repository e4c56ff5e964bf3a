export * from './backend.js';
export * from './presets.js';
export * from './serialize.js';
export * from './engine.js';
export { registerWasmTrainingKernels } from './wasm-kernels.js';
export * from './onnx-export.js';
export * from './ort-engine.js';
export * from './quantize.js';
