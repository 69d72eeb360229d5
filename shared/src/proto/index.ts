// The wire contract, generated from proto/federa/v1 by `npm run proto`. Re-exported under one name so
// callers write `federation.UpdateChunk` and it is obvious the type comes from the .proto files.
export * as federation from './generated/federa/v1/federation.js';
