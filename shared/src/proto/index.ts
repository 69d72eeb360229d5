// The wire contract, generated from proto/federa/v1 by `npm run proto`. Re-exported under one name so
// callers write `federation.UpdateChunk` and it is obvious the type comes from the .proto files.
export * as federation from './generated/federa/v1/federation.js';

/** What the site hashes into its ledger and the coordinator into its audit log: a message's exact protobuf bytes. */
export function encodeMessage<T>(codec: { encode(message: T): { finish(): Uint8Array } }, message: T): Uint8Array {
  return codec.encode(message).finish();
}
