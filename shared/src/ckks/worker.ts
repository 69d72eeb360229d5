import { parentPort } from 'node:worker_threads';
import { addRange } from './accumulator.js';
import { CkksContext } from './context.js';
import { CkksError } from './errors.js';
import { readKeyHeader } from './keys.js';
import { parametersFingerprint } from './params.js';
import { MultipartyPayloadError } from './multiparty/payload.js';
import { runMultipartyRange, type MultipartyRange } from './multiparty/ranges.js';
import { CiphertextReader } from './reader.js';

/**
 * Worker-thread side of CkksWorkerPool: each SEAL call is single-threaded, so the pool gives every thread
 * its own SEAL instance and a contiguous range of ciphertexts. Vectors, payloads and outputs live in
 * SharedArrayBuffers, so a range is written in place and nothing large is copied between threads.
 */
export type RangeRequest =
  | {
      id: number;
      op: 'encrypt';
      secretKey: Uint8Array;
      /** The vector. */
      input: Float32Array | Float64Array;
      first: number;
      count: number;
      /** The update payload being filled. */
      output: Uint8Array;
    }
  | { id: number; op: 'decrypt'; secretKey: Uint8Array; input: Uint8Array; first: number; count: number; output: Float64Array }
  /** Range-checks the coefficients of a payload's ciphertexts (the coordinator's public parameters name the context). */
  | { id: number; op: 'check'; key: Uint8Array; input: Uint8Array; first: number; count: number }
  /** Adds a checked payload's ciphertexts into their places in the shared sums. */
  | { id: number; op: 'add'; key: Uint8Array; input: Uint8Array; first: number; count: number; sum0: Uint32Array; sum1: Uint32Array }
  /** Multiparty work on a range of a vector's ciphertexts (multiparty/ranges.ts): pure TypeScript, no SEAL. */
  | { id: number; op: 'multiparty'; range: MultipartyRange };

/** A failure names its class, so the pool throws the same kind of error the calling thread would have. */
export type RangeReply = { id: number; ok: true } | { id: number; ok: false; name: string | undefined; code: string | undefined; message: string };

const contexts = new Map<string, Promise<CkksContext>>();

function contextFor(key: Uint8Array): Promise<CkksContext> {
  const { params } = readKeyHeader(key);
  const fingerprint = parametersFingerprint(params);
  let context = contexts.get(fingerprint);
  if (context === undefined) {
    context = CkksContext.create(params);
    contexts.set(fingerprint, context);
  }
  return context;
}

async function run(request: RangeRequest): Promise<void> {
  switch (request.op) {
    case 'encrypt': {
      const context = await contextFor(request.secretKey);
      // The pool checked the vector and wrote the header; this thread fills its ciphertexts.
      context.encryptRange(request.input, request.first, request.count, context.secretKeyParts(request.secretKey).sealKey, request.output);
      return;
    }
    case 'decrypt': {
      const context = await contextFor(request.secretKey);
      // The pool verified the checksum already; the header is re-read here, not trusted from a message.
      const { parts, header } = context.startDecryption(request.input, request.secretKey, false);
      context.decryptRange(request.input, header, parts.sealKey, request.first, request.count, request.output);
      return;
    }
    case 'check': {
      const context = await contextFor(request.key);
      new CiphertextReader(context, request.input, context.checkPayload(request.input, undefined, false)).checkRange(request.first, request.count);
      return;
    }
    case 'add': {
      const context = await contextFor(request.key);
      addRange(context, request.input, context.checkPayload(request.input, undefined, false), request.first, request.count, request.sum0, request.sum1);
      return;
    }
    case 'multiparty':
      runMultipartyRange(request.range);
      return;
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
          name: error instanceof Error ? error.name : undefined,
          code: error instanceof CkksError || error instanceof MultipartyPayloadError ? error.code : undefined,
          message: error instanceof Error ? error.message : String(error),
        } satisfies RangeReply),
    );
  });
}
