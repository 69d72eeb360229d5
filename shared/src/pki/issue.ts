import { isIP } from 'node:net';
import { randomBytes } from 'node:crypto';
import { z } from 'zod';
import { describeIssues, siteIdSchema } from '../study/index.js';
import { EKU_CLIENT_AUTH, EKU_SERVER_AUTH, parseCertificate, type ParsedCertificate } from './certificate.js';
import { PkiError } from './errors.js';
import {
  generateEcKeyPair,
  importSigningKey,
  privateKeyToPem,
  publicKeyDerOfPrivateKey,
  signingAlgorithmFor,
  type EcCurve,
  type EcKeyPair,
} from './keys.js';
import { siteUri } from './verify.js';
import { x509 } from './x509.js';

const DAY_MS = 86_400_000;
/** Backdating notBefore a few minutes keeps a fresh certificate usable on a peer whose clock runs slightly behind. */
const CLOCK_SKEW_MS = 5 * 60_000;
/** RFC 5280 upper bound for CommonName and Organization values. */
const MAX_NAME_LENGTH = 64;

/** A CA as its PEM files: the certificate everyone trusts and the key only the consortium operator holds. */
export interface CertificateAuthorityPem {
  certificatePem: string;
  privateKeyPem: string;
}

export interface IssuedCertificate {
  certificatePem: string;
  /** PKCS#8 PEM; write it with mode 0600. */
  privateKeyPem: string;
  subject: string;
  serialNumber: string;
  /** Node's `fingerprint256` format (colon-separated upper-case hex of SHA-256 over the DER certificate). */
  fingerprint256: string;
  notBefore: Date;
  notAfter: Date;
}

const curveSchema = z.enum(['P-256', 'P-384']);
const validityDaysSchema = z.int().min(1).max(36_500);
const nameValueSchema = z.string().trim().min(1).max(MAX_NAME_LENGTH);

/** A DNS name for a server certificate; a leading `*.` wildcard label is allowed. */
export const dnsNameSchema = z
  .string()
  .max(253)
  .refine((value) => isIP(value) === 0, { message: 'is an IP address; list it as an IP address, not a DNS name' })
  .refine((value) => /^(\*\.)?([a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?)(\.[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?)*$/i.test(value), {
    message: 'is not a valid DNS name (letters, digits, "-" and "." only, optionally starting with "*.")',
  });

export const ipAddressSchema = z.string().refine((value) => isIP(value) !== 0, { message: 'is not an IPv4 or IPv6 address' });

export const rootCaOptionsSchema = z
  .object({
    commonName: nameValueSchema.default('Federa root CA'),
    /** The consortium name, so every certificate says which consortium it belongs to. */
    organization: nameValueSchema.optional(),
    validityDays: validityDaysSchema.default(3650),
    /** P-384 by default: the root outlives every leaf by years, so it gets the larger safety margin. */
    curve: curveSchema.default('P-384'),
    notBefore: z.date().optional(),
  })
  .strict();

const leafCommon = {
  organization: nameValueSchema.optional(),
  validityDays: validityDaysSchema.default(365),
  /** Start of validity; now minus a few minutes when absent. A past date makes an already-expired certificate for tests. */
  notBefore: z.date().optional(),
  /** P-256 by default: leaves are rotated often and used in every handshake, where P-256 is the fastest. */
  curve: curveSchema.default('P-256'),
};

export const serverCertificateOptionsSchema = z
  .object({
    /** Defaults to the first DNS name (or IP address). */
    commonName: nameValueSchema.optional(),
    dnsNames: z.array(dnsNameSchema).default([]),
    ipAddresses: z.array(ipAddressSchema).default([]),
    ...leafCommon,
  })
  .strict()
  .refine((options) => options.dnsNames.length + options.ipAddresses.length > 0, {
    message: 'a server certificate needs at least one DNS name or IP address',
    path: ['dnsNames'],
  });

export const siteCertificateOptionsSchema = z.object({ siteId: siteIdSchema, ...leafCommon }).strict();

export type RootCaOptions = z.input<typeof rootCaOptionsSchema>;
export type ServerCertificateOptions = z.input<typeof serverCertificateOptionsSchema>;
export type SiteCertificateOptions = z.input<typeof siteCertificateOptionsSchema>;

function parseOptions<T extends z.ZodType>(schema: T, input: unknown, what: string): z.output<T> {
  const parsed = schema.safeParse(input);
  if (!parsed.success) {
    throw new PkiError(`invalid ${what} options: ${describeIssues(parsed.error).join('; ')}`);
  }
  return parsed.data;
}

/** 16 random bytes, positive (top bit clear) and without a leading zero byte, as RFC 5280 asks of serials. */
function randomSerialNumber(): string {
  const bytes = randomBytes(16);
  bytes[0] = (bytes[0]! & 0x7f) | 0x40;
  return bytes.toString('hex').toUpperCase();
}

// UTF8String values are taken verbatim; the library's plain-string form strips quotes and backslashes.
function distinguishedName(commonName: string, organization: string | undefined): x509.Name {
  const name: x509.JsonNameParams = [{ CN: [{ utf8String: commonName }] }];
  if (organization !== undefined) {
    name.push({ O: [{ utf8String: organization }] });
  }
  return new x509.Name(name);
}

function validity(notBefore: Date | undefined, validityDays: number): { notBefore: Date; notAfter: Date } {
  const start = notBefore ?? new Date(Date.now() - CLOCK_SKEW_MS);
  return { notBefore: start, notAfter: new Date(start.getTime() + validityDays * DAY_MS) };
}

async function describeIssued(certificate: x509.X509Certificate, keys: EcKeyPair): Promise<IssuedCertificate> {
  const certificatePem = certificate.toString('pem');
  const { node } = parseCertificate(certificatePem);
  return {
    certificatePem,
    privateKeyPem: await privateKeyToPem(keys.privateKey),
    subject: certificate.subject,
    serialNumber: node.serialNumber.toUpperCase(),
    fingerprint256: node.fingerprint256,
    notBefore: certificate.notBefore,
    notAfter: certificate.notAfter,
  };
}

/** Creates a self-signed root CA: basicConstraints CA (path length 0: it signs leaves only), keyCertSign and cRLSign. */
export async function createRootCa(options: RootCaOptions = {}): Promise<IssuedCertificate> {
  const parsed = parseOptions(rootCaOptionsSchema, options, 'root CA');
  const keys = await generateEcKeyPair(parsed.curve);
  const certificate = await x509.X509CertificateGenerator.createSelfSigned({
    serialNumber: randomSerialNumber(),
    name: distinguishedName(parsed.commonName, parsed.organization),
    ...validity(parsed.notBefore, parsed.validityDays),
    keys,
    signingAlgorithm: signingAlgorithmFor(parsed.curve),
    extensions: [
      new x509.BasicConstraintsExtension(true, 0, true),
      new x509.KeyUsagesExtension(x509.KeyUsageFlags.keyCertSign | x509.KeyUsageFlags.cRLSign, true),
      await x509.SubjectKeyIdentifierExtension.create(keys.publicKey),
    ],
  });
  return describeIssued(certificate, keys);
}

interface LoadedAuthority {
  parsed: ParsedCertificate;
  key: Awaited<ReturnType<typeof importSigningKey>>;
  keyIdentifier: string;
}

async function loadAuthority(ca: CertificateAuthorityPem): Promise<LoadedAuthority> {
  const parsed = parseCertificate(ca.certificatePem, 'CA certificate');
  if (!parsed.node.ca) {
    throw new PkiError(`"${parsed.lib.subject}" is not a CA certificate (basicConstraints CA is not set)`);
  }
  const key = await importSigningKey(ca.privateKeyPem, 'CA private key');
  if (!parsed.node.publicKey.export({ type: 'spki', format: 'der' }).equals(publicKeyDerOfPrivateKey(ca.privateKeyPem))) {
    throw new PkiError(`the CA private key does not belong to the CA certificate "${parsed.lib.subject}"`);
  }
  const now = new Date();
  if (now > parsed.lib.notAfter) {
    throw new PkiError(`the CA "${parsed.lib.subject}" expired on ${parsed.lib.notAfter.toISOString()}; it cannot issue certificates`);
  }
  const keyIdentifier = parsed.lib.getExtension(x509.SubjectKeyIdentifierExtension)?.keyId;
  if (keyIdentifier === undefined) {
    throw new PkiError(`the CA certificate "${parsed.lib.subject}" has no subjectKeyIdentifier`);
  }
  return { parsed, key, keyIdentifier };
}

interface LeafRequest {
  commonName: string;
  organization: string | undefined;
  notBefore: Date | undefined;
  validityDays: number;
  curve: EcCurve;
  extendedKeyUsage: string;
  altNames: x509.JsonGeneralNames;
}

async function issueLeaf(ca: CertificateAuthorityPem, request: LeafRequest): Promise<IssuedCertificate> {
  const authority = await loadAuthority(ca);
  const period = validity(request.notBefore, request.validityDays);
  if (period.notAfter > authority.parsed.lib.notAfter) {
    // A leaf that outlives its root fails path validation in strict TLS stacks long before anyone notices why.
    throw new PkiError(
      `a certificate valid for ${request.validityDays} days would end ${period.notAfter.toISOString()}, after the CA itself (${authority.parsed.lib.notAfter.toISOString()}); use fewer days`,
    );
  }
  const keys = await generateEcKeyPair(request.curve);
  const certificate = await x509.X509CertificateGenerator.create({
    serialNumber: randomSerialNumber(),
    subject: distinguishedName(request.commonName, request.organization),
    issuer: authority.parsed.lib.subjectName,
    ...period,
    publicKey: keys.publicKey,
    signingKey: authority.key.key,
    signingAlgorithm: signingAlgorithmFor(authority.key.curve),
    extensions: [
      new x509.BasicConstraintsExtension(false, undefined, true),
      new x509.KeyUsagesExtension(x509.KeyUsageFlags.digitalSignature, true),
      new x509.ExtendedKeyUsageExtension([request.extendedKeyUsage], false),
      new x509.SubjectAlternativeNameExtension(request.altNames, false),
      await x509.SubjectKeyIdentifierExtension.create(keys.publicKey),
      new x509.AuthorityKeyIdentifierExtension(authority.keyIdentifier),
    ],
  });
  return describeIssued(certificate, keys);
}

/** The coordinator's TLS server certificate: every DNS name and IP it is reached by as SANs, EKU serverAuth. */
export async function issueServerCertificate(ca: CertificateAuthorityPem, options: ServerCertificateOptions): Promise<IssuedCertificate> {
  const parsed = parseOptions(serverCertificateOptionsSchema, options, 'server certificate');
  return issueLeaf(ca, {
    commonName: parsed.commonName ?? parsed.dnsNames[0] ?? parsed.ipAddresses[0]!,
    organization: parsed.organization,
    notBefore: parsed.notBefore,
    validityDays: parsed.validityDays,
    curve: parsed.curve,
    extendedKeyUsage: EKU_SERVER_AUTH,
    altNames: [
      ...parsed.dnsNames.map((value) => ({ type: 'dns' as const, value })),
      ...parsed.ipAddresses.map((value) => ({ type: 'ip' as const, value })),
    ],
  });
}

/** A site's TLS client certificate: CN = site id and SAN URI urn:federa:site:<id>, EKU clientAuth. */
export async function issueSiteCertificate(ca: CertificateAuthorityPem, options: SiteCertificateOptions): Promise<IssuedCertificate> {
  const parsed = parseOptions(siteCertificateOptionsSchema, options, 'site certificate');
  return issueLeaf(ca, {
    commonName: parsed.siteId,
    organization: parsed.organization,
    notBefore: parsed.notBefore,
    validityDays: parsed.validityDays,
    curve: parsed.curve,
    extendedKeyUsage: EKU_CLIENT_AUTH,
    altNames: [{ type: 'url', value: siteUri(parsed.siteId) }],
  });
}
