import { randomBytes } from 'node:crypto';
import { beforeAll, describe, expect, it } from 'vitest';
import { createRootCa, issueSiteCertificate, type IssuedCertificate } from '../../pki/index.js';
import { EnvelopeError, openEnvelope, sealEnvelope, type Envelope, type EnvelopeContext } from './envelopes.js';

describe('envelopes: a secret from one site to another through the coordinator', () => {
  let p256: IssuedCertificate;
  let p384: IssuedCertificate;
  let other: IssuedCertificate;
  const context: EnvelopeContext = { studyId: 'study-1', epoch: 3, senderId: 'hospital-a', recipientId: 'hospital-b' };
  const secret = randomBytes(32);

  beforeAll(async () => {
    const ca = await createRootCa({ commonName: 'test consortium CA' });
    p256 = await issueSiteCertificate(ca, { siteId: 'hospital-b' });
    p384 = await issueSiteCertificate(ca, { siteId: 'hospital-b', curve: 'P-384' });
    other = await issueSiteCertificate(ca, { siteId: 'hospital-c' });
  }, 60_000);

  const expectRefused = (open: () => unknown, message: RegExp): void => {
    expect(open).toThrow(EnvelopeError);
    expect(open).toThrow(message);
  };

  it('round-trips a 32-byte secret to a P-256 and a P-384 certificate', () => {
    for (const cert of [p256, p384]) {
      const envelope = sealEnvelope(cert.certificatePem, secret, context);
      expect(envelope.recipient).toBe('hospital-b');
      expect(Buffer.from(envelope.iv, 'base64')).toHaveLength(12);
      expect(Buffer.from(envelope.ciphertext, 'base64')).toHaveLength(32 + 16);
      expect(Buffer.from(openEnvelope(envelope, cert.privateKeyPem, context))).toEqual(secret);
    }
    // A fresh ephemeral key and IV each time: two envelopes of the same secret share nothing.
    const [first, second] = [sealEnvelope(p256.certificatePem, secret, context), sealEnvelope(p256.certificatePem, secret, context)];
    expect(first.ephemeralPublicKey).not.toBe(second.ephemeralPublicKey);
    expect(first.ciphertext).not.toBe(second.ciphertext);
  });

  it('does not open with another key: another certificate of the site, or another curve', () => {
    const envelope = sealEnvelope(p256.certificatePem, secret, context);
    expectRefused(() => openEnvelope(envelope, other.privateKeyPem, context), /could not open the envelope from hospital-a: it was not sealed for this site's key, or it was altered/);
    expectRefused(() => openEnvelope(envelope, p384.privateKeyPem, context), /not sealed for this site's key/);
  });

  it('does not open when altered', () => {
    const envelope = sealEnvelope(p256.certificatePem, secret, context);
    const flipped = Buffer.from(envelope.ciphertext, 'base64');
    flipped[5] ^= 1;
    expectRefused(() => openEnvelope({ ...envelope, ciphertext: flipped.toString('base64') }, p256.privateKeyPem, context), /or it was altered/);
    const tag = Buffer.from(envelope.ciphertext, 'base64');
    tag[tag.length - 1] ^= 0x80;
    expectRefused(() => openEnvelope({ ...envelope, ciphertext: tag.toString('base64') }, p256.privateKeyPem, context), /or it was altered/);
    const swapped = sealEnvelope(p256.certificatePem, secret, context);
    expectRefused(() => openEnvelope({ ...envelope, ephemeralPublicKey: swapped.ephemeralPublicKey }, p256.privateKeyPem, context), /or it was altered/);
    expectRefused(() => openEnvelope({ ...envelope, iv: swapped.iv }, p256.privateKeyPem, context), /or it was altered/);
  });

  it('does not open in another context: epoch, sender or study', () => {
    const envelope = sealEnvelope(p256.certificatePem, secret, context);
    for (const moved of [{ ...context, epoch: 4 }, { ...context, senderId: 'hospital-c' }, { ...context, studyId: 'study-2' }]) {
      expectRefused(() => openEnvelope(envelope, p256.privateKeyPem, moved), /not sealed for this site's key, or it was altered/);
    }
  });

  it('refuses a wrong recipient, a malformed envelope, a mismatched certificate and a bad plaintext length', () => {
    const envelope = sealEnvelope(p256.certificatePem, secret, context);
    expectRefused(() => openEnvelope(envelope, other.privateKeyPem, { ...context, recipientId: 'hospital-c' }), /is for hospital-b, not hospital-c/);
    const malformed = { ...envelope, iv: Buffer.alloc(8).toString('base64') } satisfies Envelope;
    expectRefused(() => openEnvelope(malformed, p256.privateKeyPem, context), /malformed: iv/);
    expectRefused(() => openEnvelope({ ...envelope, extra: 1 } as Envelope, p256.privateKeyPem, context), /malformed/);
    expectRefused(() => sealEnvelope(other.certificatePem, secret, context), /hospital-c's, not hospital-b's/);
    expectRefused(() => sealEnvelope(p256.certificatePem, new Uint8Array(0), context), /1\.\.4096 bytes, got 0/);
    expectRefused(() => sealEnvelope(p256.certificatePem, new Uint8Array(4097), context), /got 4097/);
    expect(openEnvelope(sealEnvelope(p256.certificatePem, new Uint8Array(4096).fill(1), context), p256.privateKeyPem, context)).toHaveLength(4096);
  });
});
