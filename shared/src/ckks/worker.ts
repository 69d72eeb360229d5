import { parentPort } from 'node:worker_threads';
import { CkksContext } from './context.js';
import { CkksError } from './errors.js';
import { readKeyHeader } from './keys.js';
import { parametersFingerprint } from './params.js';

/**
 * Worker-thread side of CkksWorkerPool: each SEAL call is single-threaded, so the pool gives every thread
 * its own SEAL instance and a contiguous range of ciphertexts. Vectors, payloads and outputs live in
 * SharedArrayBuffers, so a range is written in place and nothing large is copied between threads.
 */
export interface RangeRequest {
  id: number;
  op: 'encrypt' | 'decrypt';
  secretKey: Uint8Array;
  /** encrypt: the vector; decrypt: the payload. */
  input: Float32Array | Float64Array | Uint8Array;
  first: number;
  count: number;
  /** encrypt: the update payload being filled; decrypt: the decrypted vector. */
  output: Uint8Array | Float64Array;
}

export type RangeReply = { id: number; ok: true } | { id: number; ok: false; code: string | undefined; message: string };

const contexts = new Map<string, Promise<CkksContext>>();

function contextFor(secretKey: Uint8Array): Promise<CkksContext> {
  const { params } = readKeyHeader(secretKey);
  const fingerprint = parametersFingerprint(params);
  let context = contexts.get(fingerprint);
  if (context === undefined) {
    context = CkksContext.create(params);
    contexts.set(fingerprint, context);
  }
  return context;
}

async function run(request: RangeRequest): Promise<void> {
  const context = await contextFor(request.secretKey);
  if (request.op === 'encrypt') {
    if (!(request.output instanceof Uint8Array) || request.input instanceof Uint8Array) throw new TypeError('bad encrypt request');
    // The pool checked the vector and wrote the header; this thread fills its ciphertexts.
    context.encryptRange(request.input, request.first, request.count, context.secretKeyParts(request.secretKey).sealKey, request.output);
  } else {
    if (!(request.input instanceof Uint8Array) || !(request.output instanceof Float64Array)) throw new TypeError('bad decrypt request');
    // The pool verified the checksum already; the header is re-read here, not trusted from a message.
    const { parts, header } = context.startDecryption(request.input, request.secretKey, false);
    context.decryptRange(request.input, header, parts.sealKey, request.first, request.count, request.output);
  }
}

const port = parentPort;
if (port !== null) {
  port.on('message', (request: RangeRequest) => {
    run(request).then(
      () => port.postMessage({ id: request.id, ok: true } satisfies RangeReply),
      (error: unknown) =>
        port.postMessage({
          id: request.id,
          ok: false,
          code: error instanceof CkksError ? error.code : undefined,
          message: error instanceof Error ? error.message : String(error),
        } satisfies RangeReply),
    );
  });
}
