export * from './logging/index.js';
export * from './proto/index.js';
export * from './fedavg/index.js';
export * from './chunks/index.js';
export * from './study/index.js';
export * from './model/index.js';
export * from './pki/index.js';
export * from './ckks/index.js';
