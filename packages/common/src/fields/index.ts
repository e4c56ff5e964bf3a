export * from './opencv.js';
export * from './find-cells.js';
export * from './metrics.js';
export * from './summary.js';
export * from './heatmap.js';
export * from './polygon-mask.js';
export * from './colour.js';
