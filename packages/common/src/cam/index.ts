export * from './cam.js';
export * from './localize.js';
export * from './colormap.js';
export * from './metrics.js';
export * from './foreground.js';
