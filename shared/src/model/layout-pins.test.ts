import { createHash } from 'node:crypto';
import { describe, expect, it } from 'vitest';
import { WEIGHTS_LAYOUT_VERSION, describeParameters, initialWeights, modelSpecHash, type ModelSpec } from './index.js';

/**
 * The classification layouts as they were before the U-Net was registered, pinned so that adding an architecture
 * (or touching shared pieces such as the init kinds) provably leaves every stored or in-flight weight vector and every
 * study's model hash as it was. Each row: the spec, then SHA-256 of the JSON of describeParameters, of the initial
 * weights' float32 bytes, and modelSpecHash. If one has to change, bump WEIGHTS_LAYOUT_VERSION and re-pin.
 */
const PINNED: Array<[ModelSpec, string, string, string]> = [
  [
    { architecture: 'small-cnn', inputSize: 64, channels: 1, classes: 2, seed: 42 },
    '78e389e4c6586fcf1defff37aac0142625d11a12ccb7e0532563472818fc6ed0',
    'f5ab82156867a570eaae327d52f48319e847c065ef57fdf26cb6d73fad8ec04d',
    '497ead06e316fe457dda22f30c9d53c8afef18f9c36a44bcca2b04820acfb26d',
  ],
  [
    { architecture: 'small-cnn', inputSize: 50, channels: 3, classes: 5, seed: 7 },
    '7a48d6ad102e634acccc1688c3da957db604dd2d88324530ab94e75281e982d7',
    '405a021076c5de2a2a69d183765a651dcf17811ee93d762013a85e1776e40757',
    '9ef0734b9b275ec5824ae35b10a30fb7076026d2b5746aef95bfd5a73bf5ae92',
  ],
  [
    { architecture: 'resnet', inputSize: 64, channels: 1, classes: 2, seed: 42 },
    'eff25c307d5dd8564502ff4edaa8668523c2b86a49710cf54bd49f98e0a913a4',
    '5dbf309ee87f0fef2a26f0690cee5c804a06cc55df40ec0d05dfafc38109d9ba',
    'db2e7d38698fdc8ca17e0a2dabbff9a6327eda64ea8a09bf79592e901046442b',
  ],
  [
    { architecture: 'resnet', inputSize: 40, channels: 3, classes: 4, seed: 7, width: 8, blocksPerStage: [1, 2, 1, 1] },
    '7c625739b9ab19993825395a585e0d82a9df2ccb513c5152379af43e3595a388',
    'caf69c5d70604329c38da483520c726f1c462055048921746ec71dfdc24fda21',
    '8458e69d7ed047e79f32aefdfe6e85f5d1a751333bb6c5d93ae43f1c304c7cc6',
  ],
  [
    { architecture: 'mobilenet', inputSize: 64, channels: 1, classes: 2, seed: 42 },
    'e8b11d35719f444d73b793f981223401950a9c4a56c5590d91cff26802256375',
    'aa7e14e342ace7333e71fb5ad88b5aa36f98aaf6b34da422f36c63b74e60f178',
    '09fe44bda51ffe94a53995957464a74b4b4b4355ccfcc66bc361469efb57d97a',
  ],
  [
    { architecture: 'mobilenet', inputSize: 40, channels: 3, classes: 3, seed: 7, alpha: 0.25 },
    '17fe46db58a704b45748053d3713aaf5697182fc6b72d8a6087bcf26e758360b',
    '5c93805f04e01c5ac48a10a7f0e48875c53de01e383aa41d4332eb5a91171673',
    'f316ee30d6eda36f37b54b9ea357ae1f5595fbc4eaa1e21a8365234e8321d272',
  ],
];

const sha256 = (bytes: Uint8Array | string): string => createHash('sha256').update(bytes).digest('hex');

describe('existing weight layouts', () => {
  it('are still layout version 1', () => {
    expect(WEIGHTS_LAYOUT_VERSION).toBe(1);
  });

  it.each(PINNED)('%j: parameter list, initial weights and spec hash are unchanged', (spec, layout, weights, specHash) => {
    expect(sha256(JSON.stringify(describeParameters(spec)))).toBe(layout);
    const w = initialWeights(spec);
    expect(sha256(new Uint8Array(w.buffer, w.byteOffset, w.byteLength))).toBe(weights);
    expect(modelSpecHash(spec)).toBe(specHash);
  });
});
