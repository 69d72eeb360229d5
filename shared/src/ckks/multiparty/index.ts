export * from './params.js';
export * from './protocol.js';
export * from './ring.js';
export * from './wire.js';
export * from './key-shares.js';
export * from './contributions.js';
