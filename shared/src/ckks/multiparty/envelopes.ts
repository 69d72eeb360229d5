import {
  createCipheriv,
  createDecipheriv,
  createPrivateKey,
  createPublicKey,
  diffieHellman,
  generateKeyPairSync,
  hkdfSync,
  randomBytes,
  X509Certificate,
  type KeyObject,
} from 'node:crypto';
import { z } from 'zod';
import { extractSiteId } from '../../pki/index.js';
import { canonicalJson } from '../../study/canonical-json.js';
import { siteIdSchema, STUDY_ID } from '../../study/definition.js';

/**
 * ECIES to a site certificate: how one site hands another a 32-byte secret (a model-key part, a seed) through the
 * coordinator without the coordinator reading it. An ephemeral key on the recipient certificate's curve, ECDH with
 * the certificate's key, HKDF-SHA256 and AES-256-GCM. The context (study, epoch, sender, recipient) is both the
 * HKDF info and the AAD, so an envelope moved to another study, epoch or pair of sites does not open.
 */

const DOMAIN = 'federa/multiparty/envelope/v1';
const IV_BYTES = 12;
const TAG_BYTES = 16;
const MAX_PLAINTEXT = 4096;

/** Base64 of a byte string whose decoded length satisfies `check` (so a schema-valid envelope is well formed). */
const base64Bytes = (what: string, check: (length: number) => boolean) =>
  z
    .string()
    .regex(/^[A-Za-z0-9+/]*={0,2}$/, { message: `${what} is not base64` })
    .refine((value) => value.length % 4 === 0 && check(Buffer.from(value, 'base64').length), { message: `${what} has the wrong length` });

export const envelopeSchema = z
  .object({
    recipient: siteIdSchema,
    /** SPKI DER of the sender's ephemeral EC public key. */
    ephemeralPublicKey: base64Bytes('ephemeralPublicKey', (length) => length > 0 && length <= 256),
    iv: base64Bytes('iv', (length) => length === IV_BYTES),
    /** AES-256-GCM ciphertext followed by its 16-byte tag. */
    ciphertext: base64Bytes('ciphertext', (length) => length > TAG_BYTES && length <= MAX_PLAINTEXT + TAG_BYTES),
  })
  .strict();

export type Envelope = z.output<typeof envelopeSchema>;

export interface EnvelopeContext {
  studyId: string;
  epoch: number;
  senderId: string;
  recipientId: string;
}

const contextSchema = z
  .object({ studyId: z.string().regex(STUDY_ID), epoch: z.int().min(1), senderId: siteIdSchema, recipientId: siteIdSchema })
  .strict();

export class EnvelopeError extends Error {
  override readonly name = 'EnvelopeError';
}

const CURVES = new Set(['prime256v1', 'secp384r1']);

function parseContext(context: EnvelopeContext): Buffer {
  const parsed = contextSchema.safeParse(context);
  if (!parsed.success) throw new EnvelopeError(`the envelope context is invalid: ${parsed.error.issues[0]?.message ?? 'invalid'}`);
  // Only the four fields, in canonical order: both ends derive the same bytes from the same context.
  return Buffer.from(DOMAIN + canonicalJson(parsed.data), 'utf8');
}

function curveOf(key: KeyObject, what: string): string {
  const curve = key.asymmetricKeyType === 'ec' ? key.asymmetricKeyDetails?.namedCurve : undefined;
  if (curve === undefined || !CURVES.has(curve)) throw new EnvelopeError(`${what} is not a P-256 or P-384 EC key`);
  return curve;
}

function keyFor(shared: Buffer, salt: Buffer, info: Buffer): Buffer {
  return Buffer.from(hkdfSync('sha256', shared, salt, info, 32));
}

/** Seals 1..4096 bytes for the site of `recipientCertificatePem`, which must be context.recipientId's certificate. */
export function sealEnvelope(recipientCertificatePem: string, plaintext: Uint8Array, context: EnvelopeContext): Envelope {
  const info = parseContext(context);
  if (!(plaintext instanceof Uint8Array) || plaintext.length < 1 || plaintext.length > MAX_PLAINTEXT) {
    throw new EnvelopeError(`an envelope holds 1..${MAX_PLAINTEXT} bytes, got ${plaintext instanceof Uint8Array ? plaintext.length : 'no bytes'}`);
  }
  let certificate: X509Certificate;
  let siteId: string;
  try {
    certificate = new X509Certificate(recipientCertificatePem);
    siteId = extractSiteId(recipientCertificatePem);
  } catch (error) {
    throw new EnvelopeError(`the recipient certificate is not a readable site certificate: ${(error as Error).message}`);
  }
  // Sealing to the wrong certificate would hand the secret to another site than the context names.
  if (siteId !== context.recipientId) throw new EnvelopeError(`the recipient certificate is ${siteId}'s, not ${context.recipientId}'s`);
  const recipientKey = certificate.publicKey;
  const namedCurve = curveOf(recipientKey, `the certificate of ${siteId}`);
  const ephemeral = generateKeyPairSync('ec', { namedCurve });
  const ephemeralDer = ephemeral.publicKey.export({ type: 'spki', format: 'der' });
  const key = keyFor(diffieHellman({ privateKey: ephemeral.privateKey, publicKey: recipientKey }), ephemeralDer, info);
  const iv = randomBytes(IV_BYTES);
  const cipher = createCipheriv('aes-256-gcm', key, iv, { authTagLength: TAG_BYTES });
  cipher.setAAD(info);
  const ciphertext = Buffer.concat([cipher.update(plaintext), cipher.final(), cipher.getAuthTag()]);
  return {
    recipient: context.recipientId,
    ephemeralPublicKey: ephemeralDer.toString('base64'),
    iv: iv.toString('base64'),
    ciphertext: ciphertext.toString('base64'),
  };
}

/** Opens an envelope with the recipient site's private key (PKCS#8 PEM), for the context it was sealed in. */
export function openEnvelope(envelope: Envelope, recipientPrivateKeyPem: string, context: EnvelopeContext): Uint8Array {
  const info = parseContext(context);
  const parsed = envelopeSchema.safeParse(envelope);
  if (!parsed.success) {
    const issue = parsed.error.issues[0];
    throw new EnvelopeError(`the envelope from ${context.senderId} is malformed: ${issue ? `${issue.path.join('.')}: ${issue.message}` : 'invalid'}`);
  }
  const { recipient, ephemeralPublicKey, iv, ciphertext } = parsed.data;
  if (recipient !== context.recipientId) throw new EnvelopeError(`the envelope from ${context.senderId} is for ${recipient}, not ${context.recipientId}`);
  let privateKey: KeyObject;
  try {
    privateKey = createPrivateKey(recipientPrivateKeyPem);
  } catch (error) {
    throw new EnvelopeError(`this site's private key is not a readable PEM key: ${(error as Error).message}`);
  }
  const curve = curveOf(privateKey, "this site's private key");
  const unopenable = (): EnvelopeError =>
    new EnvelopeError(`could not open the envelope from ${context.senderId}: it was not sealed for this site's key, or it was altered`);
  const ephemeralDer = Buffer.from(ephemeralPublicKey, 'base64');
  let shared: Buffer;
  try {
    const publicKey = createPublicKey({ key: ephemeralDer, format: 'der', type: 'spki' });
    // A key on another curve was sealed for another site's key (or forged): the same answer as a failed tag.
    if (publicKey.asymmetricKeyType !== 'ec' || publicKey.asymmetricKeyDetails?.namedCurve !== curve) throw unopenable();
    shared = diffieHellman({ privateKey, publicKey });
  } catch {
    throw unopenable();
  }
  const sealed = Buffer.from(ciphertext, 'base64');
  try {
    const decipher = createDecipheriv('aes-256-gcm', keyFor(shared, ephemeralDer, info), Buffer.from(iv, 'base64'), { authTagLength: TAG_BYTES });
    decipher.setAAD(info);
    decipher.setAuthTag(sealed.subarray(sealed.length - TAG_BYTES));
    const plain = Buffer.concat([decipher.update(sealed.subarray(0, sealed.length - TAG_BYTES)), decipher.final()]);
    // A copy, not a view: a small Buffer may sit in Node's shared pool, whose other bytes .buffer would expose.
    const out = new Uint8Array(plain);
    plain.fill(0);
    return out;
  } catch {
    throw unopenable();
  }
}
