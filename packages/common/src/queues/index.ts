export * from './names.js';
export * from './schemas.js';
export * from './connection.js';
export * from './contracts.js';
export * from './train-cancel.js';
export * from './listing.js';
export * from './workers.js';
export * from './train-jobs.js';
