import { createHash } from 'node:crypto';
import { readFile, stat } from 'node:fs/promises';
import { join } from 'node:path';
import { z } from 'zod';
import { describeIssues, siteIdSchema } from '../study/index.js';
import { certificateFingerprint, keyMatchesCertificate } from './certificate.js';
import { CertificateRejectedError, PkiError, type CertificateRejectionCode } from './errors.js';
import { fingerprint256Schema, parseRevocationList, serialNumberSchema, type RevocationEntry } from './revocation.js';
import { assertCertificateTrusted, type CertificatePurpose } from './verify.js';

/** Written into every kit.json; bump when the layout changes so old readers refuse new kits instead of misreading them. */
export const KIT_FORMAT = 'federa-kit/1';

/** File names inside kits. Fixed, never taken from kit.json, so a manifest cannot point a reader elsewhere. */
export const KIT_FILES = {
  manifest: 'kit.json',
  ca: 'ca.pem',
  serverCertificate: 'server.pem',
  serverKey: 'server-key.pem',
  siteCertificate: 'site.pem',
  siteKey: 'site-key.pem',
  revoked: 'revoked.json',
  ckksSecretKey: 'ckks-secret.key',
  ckksPublicParams: 'ckks-public.params',
} as const;

const isoDate = z.iso.datetime();
const sha256HexSchema = z.string().regex(/^[0-9a-f]{64}$/, 'must be a lower-case hex SHA-256');

const caRecordSchema = z
  .object({ file: z.literal(KIT_FILES.ca), subject: z.string().min(1), fingerprint256: fingerprint256Schema, notAfter: isoDate })
  .strict();

function certificateRecordShape<C extends string, K extends string>(file: C, keyFile: K) {
  return {
    file: z.literal(file),
    keyFile: z.literal(keyFile),
    subject: z.string().min(1),
    serialNumber: serialNumberSchema,
    fingerprint256: fingerprint256Schema,
    notBefore: isoDate,
    notAfter: isoDate,
  };
}

export const coordinatorKitManifestSchema = z
  .object({
    format: z.literal(KIT_FORMAT),
    kind: z.literal('coordinator'),
    consortium: z.string().min(1),
    ca: caRecordSchema,
    certificate: z
      .object({
        ...certificateRecordShape(KIT_FILES.serverCertificate, KIT_FILES.serverKey),
        dnsNames: z.array(z.string()),
        ipAddresses: z.array(z.string()),
      })
      .strict(),
    // Public parameters only: the coordinator kit has no field, and no file, for a CKKS secret key. Absent when the
    // consortium was provisioned without a shared key (multiparty keys only).
    ckks: z
      .object({ fingerprint: z.string().min(1), publicParamsFile: z.literal(KIT_FILES.ckksPublicParams), publicParamsSha256: sha256HexSchema })
      .strict()
      .optional(),
    revokedFile: z.literal(KIT_FILES.revoked),
    updatedAt: isoDate,
  })
  .strict();

export const siteKitManifestSchema = z
  .object({
    format: z.literal(KIT_FORMAT),
    kind: z.literal('site'),
    consortium: z.string().min(1),
    siteId: siteIdSchema,
    ca: caRecordSchema,
    certificate: z.object(certificateRecordShape(KIT_FILES.siteCertificate, KIT_FILES.siteKey)).strict(),
    // The consortium's one shared CKKS key, only when it was provisioned with --shared-key (aggregation: ckks);
    // multiparty keys are made at each site and are in no kit.
    ckks: z
      .object({
        fingerprint: z.string().min(1),
        secretKeyFile: z.literal(KIT_FILES.ckksSecretKey),
        secretKeySha256: sha256HexSchema,
        publicParamsFile: z.literal(KIT_FILES.ckksPublicParams),
        publicParamsSha256: sha256HexSchema,
      })
      .strict()
      .optional(),
    updatedAt: isoDate,
  })
  .strict();

export type CoordinatorKitManifest = z.output<typeof coordinatorKitManifestSchema>;
export type SiteKitManifest = z.output<typeof siteKitManifestSchema>;

/** A kit that cannot be used, naming the kit folder and the file at fault. */
export class KitError extends PkiError {
  override readonly name = 'KitError';

  constructor(
    message: string,
    /** Set when the kit's own certificate was rejected (expired, wrong CA, ...). */
    readonly rejection?: CertificateRejectionCode,
  ) {
    super(message);
  }
}

export interface KitReadOptions {
  /** The moment certificates must be valid at; now when absent. */
  at?: Date;
}

export interface CoordinatorKit {
  dir: string;
  manifest: CoordinatorKitManifest;
  caPem: string;
  certificatePem: string;
  privateKeyPem: string;
  /** The shared key's public parameters; null without a shared key. */
  ckksPublicParams: Uint8Array | null;
  revoked: RevocationEntry[];
  /** Usable-but-wrong findings, e.g. a private key readable by other users. */
  warnings: string[];
}

export interface SiteKit {
  dir: string;
  manifest: SiteKitManifest;
  siteId: string;
  caPem: string;
  certificatePem: string;
  privateKeyPem: string;
  /** The consortium's shared CKKS key (aggregation: ckks); null when it was provisioned without one. */
  ckksSecretKey: Uint8Array | null;
  ckksPublicParams: Uint8Array | null;
  warnings: string[];
}

export function sha256HexOf(data: Uint8Array): string {
  return createHash('sha256').update(data).digest('hex');
}

async function readKitFile(dir: string, file: string): Promise<Buffer> {
  try {
    return await readFile(join(dir, file));
  } catch (error) {
    const code = (error as NodeJS.ErrnoException).code;
    throw new KitError(code === 'ENOENT' ? `kit ${dir} has no ${file}` : `kit ${dir}: cannot read ${file}: ${(error as Error).message}`);
  }
}

async function readManifest<T extends z.ZodType>(dir: string, schema: T): Promise<z.output<T>> {
  const text = (await readKitFile(dir, KIT_FILES.manifest)).toString('utf8');
  let value: unknown;
  try {
    value = JSON.parse(text);
  } catch (error) {
    throw new KitError(`kit ${dir}: ${KIT_FILES.manifest} is not valid JSON: ${(error as Error).message}`);
  }
  const parsed = schema.safeParse(value);
  if (!parsed.success) {
    throw new KitError(`kit ${dir}: ${KIT_FILES.manifest} is invalid: ${describeIssues(parsed.error).join('; ')}`);
  }
  return parsed.data;
}

async function keyModeWarning(dir: string, file: string): Promise<string[]> {
  const mode = (await stat(join(dir, file))).mode & 0o777;
  return (mode & 0o077) === 0 ? [] : [`${join(dir, file)} is readable by other users (mode ${mode.toString(8).padStart(4, '0')}); run chmod 600 on it`];
}

interface CertificateFiles {
  caPem: string;
  certificatePem: string;
  privateKeyPem: string;
  siteId: string | null;
}

async function readCertificateFiles(
  dir: string,
  manifest: CoordinatorKitManifest | SiteKitManifest,
  purpose: CertificatePurpose,
  at: Date,
): Promise<CertificateFiles> {
  const caPem = (await readKitFile(dir, KIT_FILES.ca)).toString('utf8');
  const certificatePem = (await readKitFile(dir, manifest.certificate.file)).toString('utf8');
  const privateKeyPem = (await readKitFile(dir, manifest.certificate.keyFile)).toString('utf8');
  const mismatch = (file: string, actual: string, expected: string): KitError =>
    new KitError(`kit ${dir}: ${file} does not match ${KIT_FILES.manifest} (fingerprint ${actual}, kit.json records ${expected})`);
  try {
    const caFingerprint = certificateFingerprint(caPem);
    if (caFingerprint !== manifest.ca.fingerprint256) throw mismatch(KIT_FILES.ca, caFingerprint, manifest.ca.fingerprint256);
    const fingerprint = certificateFingerprint(certificatePem);
    if (fingerprint !== manifest.certificate.fingerprint256) {
      throw mismatch(manifest.certificate.file, fingerprint, manifest.certificate.fingerprint256);
    }
    const verified = assertCertificateTrusted(certificatePem, caPem, { purpose, at });
    if (!keyMatchesCertificate(certificatePem, privateKeyPem)) {
      throw new KitError(`kit ${dir}: ${manifest.certificate.keyFile} is not the private key of ${manifest.certificate.file}`);
    }
    return { caPem, certificatePem, privateKeyPem, siteId: verified.siteId };
  } catch (error) {
    if (error instanceof CertificateRejectedError) {
      throw new KitError(`kit ${dir}: ${manifest.certificate.file}: ${error.message}`, error.code);
    }
    if (error instanceof KitError) throw error;
    if (error instanceof PkiError) throw new KitError(`kit ${dir}: ${error.message}`);
    throw error;
  }
}

async function readHashedFile(dir: string, file: string, expectedSha256: string): Promise<Uint8Array> {
  const data = await readKitFile(dir, file);
  if (sha256HexOf(data) !== expectedSha256) {
    throw new KitError(`kit ${dir}: ${file} is damaged or replaced (its SHA-256 differs from the one in ${KIT_FILES.manifest})`);
  }
  return new Uint8Array(data);
}

/**
 * Reads and checks a coordinator kit: manifest, CA and server certificate fingerprints, chain to the CA with
 * EKU serverAuth, key/certificate pair, CKKS public parameters, revoked.json. Refuses a kit that contains a
 * CKKS secret key: the coordinator must never be able to decrypt.
 */
export async function readCoordinatorKit(dir: string, options: KitReadOptions = {}): Promise<CoordinatorKit> {
  const manifest = await readManifest(dir, coordinatorKitManifestSchema);
  const secret = await stat(join(dir, KIT_FILES.ckksSecretKey)).then(
    () => true,
    () => false,
  );
  if (secret) {
    throw new KitError(
      `kit ${dir} contains ${KIT_FILES.ckksSecretKey}: the coordinator must never hold the CKKS secret key; delete that file`,
    );
  }
  const files = await readCertificateFiles(dir, manifest, 'server', options.at ?? new Date());
  const ckksPublicParams = manifest.ckks ? await readHashedFile(dir, manifest.ckks.publicParamsFile, manifest.ckks.publicParamsSha256) : null;
  let revoked: RevocationEntry[];
  try {
    revoked = parseRevocationList((await readKitFile(dir, KIT_FILES.revoked)).toString('utf8'), join(dir, KIT_FILES.revoked));
  } catch (error) {
    throw error instanceof KitError ? error : new KitError((error as Error).message);
  }
  return {
    dir,
    manifest,
    caPem: files.caPem,
    certificatePem: files.certificatePem,
    privateKeyPem: files.privateKeyPem,
    ckksPublicParams,
    revoked,
    warnings: await keyModeWarning(dir, manifest.certificate.keyFile),
  };
}

/** Reads and checks a site kit: like readCoordinatorKit, with EKU clientAuth, the site id, and the CKKS secret key. */
export async function readSiteKit(dir: string, options: KitReadOptions = {}): Promise<SiteKit> {
  const manifest = await readManifest(dir, siteKitManifestSchema);
  const files = await readCertificateFiles(dir, manifest, 'client', options.at ?? new Date());
  if (files.siteId !== manifest.siteId) {
    throw new KitError(`kit ${dir}: ${KIT_FILES.siteCertificate} is for site "${files.siteId}" but ${KIT_FILES.manifest} says "${manifest.siteId}"`);
  }
  const ckksSecretKey = manifest.ckks ? await readHashedFile(dir, manifest.ckks.secretKeyFile, manifest.ckks.secretKeySha256) : null;
  const ckksPublicParams = manifest.ckks ? await readHashedFile(dir, manifest.ckks.publicParamsFile, manifest.ckks.publicParamsSha256) : null;
  return {
    dir,
    manifest,
    siteId: manifest.siteId,
    caPem: files.caPem,
    certificatePem: files.certificatePem,
    privateKeyPem: files.privateKeyPem,
    ckksSecretKey,
    ckksPublicParams,
    warnings: [
      ...(await keyModeWarning(dir, manifest.certificate.keyFile)),
      ...(manifest.ckks ? await keyModeWarning(dir, manifest.ckks.secretKeyFile) : []),
    ],
  };
}
