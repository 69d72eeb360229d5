import { mkdir, readdir, readFile, rm, stat } from 'node:fs/promises';
import { dirname, join } from 'node:path';
import type { ZodType } from 'zod';
import {
  KIT_FILES,
  KIT_FORMAT,
  certificateFingerprint,
  createLogger,
  dnsNameSchema,
  ipAddressSchema,
  createRootCa,
  inspectCertificate,
  issueServerCertificate,
  issueSiteCertificate,
  sha256HexOf,
  type CertificateAuthorityPem,
  type Logger,
  type CoordinatorKitManifest,
  type IssuedCertificate,
  type SiteKitManifest,
} from '@federa/shared';
import { validateCkksKeyMaterial, type CkksKeyGenerator } from './ckks.js';
import {
  COORDINATOR_PARTICIPANT,
  parseConsortiumConfig,
  provisionSiteIdSchema,
  validityDaysSchema,
  type ConsortiumConfig,
} from './consortium.js';
import { ProvisionError } from './errors.js';
import {
  PUBLIC_FILE_MODE,
  SECRET_FILE_MODE,
  makeKitDir,
  pathExists,
  publishDir,
  replaceFile,
  temporarySibling,
  withLock,
  writeNewFile,
} from './files.js';
import {
  OPERATOR_FILES,
  consortiumStateSchema,
  issuedLedgerSchema,
  kitsLayout,
  readJsonFile,
  revocationListFromLedger,
  toJsonFile,
  type ConsortiumState,
  type IssuedCertificateRecord,
  type IssuedLedger,
  type KitsLayout,
} from './state.js';

let logger: Logger | undefined;
/** Created on first use, so importing this module opens no log stream. */
function log(): Logger {
  logger ??= createLogger('provision');
  return logger;
}

/** What one issued kit looks like to the caller (and the CLI's summary). */
export interface ParticipantKitSummary {
  /** `coordinator` or a site id. */
  participant: string;
  kitDir: string;
  fingerprint256: string;
  serialNumber: string;
  notAfter: Date;
}

export interface ProvisionResult {
  outDir: string;
  caDir: string;
  caFingerprint256: string;
  caNotAfter: Date;
  /** The shared CKKS key's fingerprint; null without one (multiparty keys only, the default). */
  ckksFingerprint: string | null;
  coordinator: ParticipantKitSummary;
  sites: ParticipantKitSummary[];
}

export interface ProvisionConsortiumOptions {
  /** consortium.yaml contents, parsed (validated again here). */
  config: ConsortiumConfig;
  outDir: string;
  /**
   * Makes the consortium's one shared CKKS key set (`--shared-key`), called once before anything is written; absent,
   * the kits hold no CKKS secret at all and studies use multiparty keys, made at each site.
   */
  generateCkksKeys?: CkksKeyGenerator;
}

export interface AddSiteOptions {
  outDir: string;
  siteId: string;
  /** Certificate validity; consortium.yaml's validityDays.site when absent. */
  validityDays?: number;
}

export interface RenewOptions {
  outDir: string;
  /** `coordinator` or a site id. */
  participant: string;
  validityDays?: number;
  /** Coordinator only: replace the DNS names in its certificate (e.g. it moved host). */
  hostnames?: string[];
  /** Coordinator only: replace the IP addresses in its certificate. */
  ips?: string[];
}

export interface RevokeOptions {
  outDir: string;
  siteId: string;
  reason?: string;
}

export interface RevokeResult {
  siteId: string;
  /** Certificates revoked by this call. */
  revoked: IssuedCertificateRecord[];
  /** Certificates of this site that were already revoked before. */
  alreadyRevoked: number;
  /** The coordinator kit's revoked.json that now lists them, or null when that kit is missing from --out. */
  revocationFile: string | null;
}

interface CkksFiles {
  fingerprint: string;
  secretKey: Uint8Array;
  publicParams: Uint8Array;
}

/** The operator's CA folder, loaded and cross-checked. */
interface OperatorState {
  layout: KitsLayout;
  consortium: ConsortiumState;
  ledger: IssuedLedger;
  ca: CertificateAuthorityPem;
  ckks: CkksFiles | null;
}

function summary(participant: string, kitDir: string, issued: IssuedCertificate): ParticipantKitSummary {
  return { participant, kitDir, fingerprint256: issued.fingerprint256, serialNumber: issued.serialNumber, notAfter: issued.notAfter };
}

function ledgerRecord(participant: string, kind: 'server' | 'site', issued: IssuedCertificate, at: Date): IssuedCertificateRecord {
  return {
    participant,
    kind,
    serialNumber: issued.serialNumber,
    fingerprint256: issued.fingerprint256,
    notBefore: issued.notBefore.toISOString(),
    notAfter: issued.notAfter.toISOString(),
    issuedAt: at.toISOString(),
  };
}

function caRecord(state: Pick<OperatorState, 'ca'>): SiteKitManifest['ca'] {
  const details = inspectCertificate(state.ca.certificatePem, 'CA certificate');
  return { file: KIT_FILES.ca, subject: details.subject, fingerprint256: details.fingerprint256, notAfter: details.notAfter.toISOString() };
}

function certificateRecord<F extends string, K extends string>(file: F, keyFile: K, issued: IssuedCertificate) {
  return {
    file,
    keyFile,
    subject: issued.subject,
    serialNumber: issued.serialNumber,
    fingerprint256: issued.fingerprint256,
    notBefore: issued.notBefore.toISOString(),
    notAfter: issued.notAfter.toISOString(),
  };
}

async function writeSiteKit(dir: string, state: Omit<OperatorState, 'ledger' | 'layout'>, siteId: string, issued: IssuedCertificate): Promise<void> {
  const manifest: SiteKitManifest = {
    format: KIT_FORMAT,
    kind: 'site',
    consortium: state.consortium.name,
    siteId,
    ca: caRecord(state),
    certificate: certificateRecord(KIT_FILES.siteCertificate, KIT_FILES.siteKey, issued),
    ...(state.ckks
      ? {
          ckks: {
            fingerprint: state.ckks.fingerprint,
            secretKeyFile: KIT_FILES.ckksSecretKey,
            secretKeySha256: sha256HexOf(state.ckks.secretKey),
            publicParamsFile: KIT_FILES.ckksPublicParams,
            publicParamsSha256: sha256HexOf(state.ckks.publicParams),
          },
        }
      : {}),
    updatedAt: new Date().toISOString(),
  };
  await makeKitDir(dir);
  await writeNewFile(join(dir, KIT_FILES.ca), state.ca.certificatePem, PUBLIC_FILE_MODE);
  await writeNewFile(join(dir, KIT_FILES.siteCertificate), issued.certificatePem, PUBLIC_FILE_MODE);
  await writeNewFile(join(dir, KIT_FILES.siteKey), issued.privateKeyPem, SECRET_FILE_MODE);
  if (state.ckks) {
    await writeNewFile(join(dir, KIT_FILES.ckksSecretKey), state.ckks.secretKey, SECRET_FILE_MODE);
    // Sites need the encryption parameters to build the CKKS context the secret key belongs to.
    await writeNewFile(join(dir, KIT_FILES.ckksPublicParams), state.ckks.publicParams, PUBLIC_FILE_MODE);
  }
  await writeNewFile(join(dir, KIT_FILES.manifest), toJsonFile(manifest), PUBLIC_FILE_MODE);
}

async function writeCoordinatorKit(
  dir: string,
  state: Omit<OperatorState, 'layout'>,
  issued: IssuedCertificate,
  sans: { dnsNames: string[]; ipAddresses: string[] },
): Promise<void> {
  const manifest: CoordinatorKitManifest = {
    format: KIT_FORMAT,
    kind: 'coordinator',
    consortium: state.consortium.name,
    ca: caRecord(state),
    certificate: { ...certificateRecord(KIT_FILES.serverCertificate, KIT_FILES.serverKey, issued), ...sans },
    ...(state.ckks
      ? { ckks: { fingerprint: state.ckks.fingerprint, publicParamsFile: KIT_FILES.ckksPublicParams, publicParamsSha256: sha256HexOf(state.ckks.publicParams) } }
      : {}),
    revokedFile: KIT_FILES.revoked,
    updatedAt: new Date().toISOString(),
  };
  await makeKitDir(dir);
  await writeNewFile(join(dir, KIT_FILES.ca), state.ca.certificatePem, PUBLIC_FILE_MODE);
  await writeNewFile(join(dir, KIT_FILES.serverCertificate), issued.certificatePem, PUBLIC_FILE_MODE);
  await writeNewFile(join(dir, KIT_FILES.serverKey), issued.privateKeyPem, SECRET_FILE_MODE);
  // The coordinator gets the public parameters only: it must never be able to decrypt an update or a model.
  if (state.ckks) await writeNewFile(join(dir, KIT_FILES.ckksPublicParams), state.ckks.publicParams, PUBLIC_FILE_MODE);
  await writeNewFile(join(dir, KIT_FILES.revoked), toJsonFile(revocationListFromLedger(state.ledger)), PUBLIC_FILE_MODE);
  await writeNewFile(join(dir, KIT_FILES.manifest), toJsonFile(manifest), PUBLIC_FILE_MODE);
}

async function writeOperatorFiles(layout: KitsLayout, state: Omit<OperatorState, 'layout'>): Promise<void> {
  await makeKitDir(layout.caDir);
  await writeNewFile(layout.caFile('caCertificate'), state.ca.certificatePem, PUBLIC_FILE_MODE);
  await writeNewFile(layout.caFile('caKey'), state.ca.privateKeyPem, SECRET_FILE_MODE);
  // Kept with the CA key so add-site can hand the same shared key set to a new site after the others shipped.
  if (state.ckks) {
    await writeNewFile(layout.caFile('ckksSecretKey'), state.ckks.secretKey, SECRET_FILE_MODE);
    await writeNewFile(layout.caFile('ckksPublicParams'), state.ckks.publicParams, PUBLIC_FILE_MODE);
  }
  await writeNewFile(layout.caFile('consortium'), toJsonFile(state.consortium), PUBLIC_FILE_MODE);
  await writeNewFile(layout.caFile('issued'), toJsonFile(state.ledger), PUBLIC_FILE_MODE);
}

async function listProvisionedSites(layout: KitsLayout): Promise<string[]> {
  if (!(await pathExists(layout.sitesDir))) return [];
  return (await readdir(layout.sitesDir, { withFileTypes: true }))
    .filter((entry) => entry.isDirectory() && !entry.name.startsWith('.'))
    .map((entry) => entry.name)
    .sort();
}

async function refuseExistingOutput(outDir: string, config: ConsortiumConfig): Promise<void> {
  if (!(await pathExists(outDir))) return;
  if (!(await stat(outDir)).isDirectory()) {
    throw new ProvisionError(`${outDir} exists and is not a folder; choose a new or empty folder for --out`);
  }
  const layout = kitsLayout(outDir);
  if (await pathExists(layout.caDir)) {
    const provisioned = new Set(await listProvisionedSites(layout));
    const missing = config.sites.map((site) => site.id).filter((id) => !provisioned.has(id));
    const hint =
      missing.length > 0
        ? ` Sites in the config without a kit: ${missing.join(', ')}; add each with \`federa provision add-site <id> --out ${outDir}\`.`
        : '';
    throw new ProvisionError(
      `${outDir} already holds a provisioned consortium (${layout.caDir}). Provisioning again would mint a new root CA and ` +
        `invalidate every kit already handed out, so it is refused. To add a site run \`federa provision add-site <id> --out ${outDir}\`; ` +
        `to reissue a certificate run \`federa provision renew <coordinator|site-id> --out ${outDir}\`.${hint}`,
    );
  }
  const entries = await readdir(outDir);
  if (entries.length > 0) {
    throw new ProvisionError(`${outDir} is not empty and holds no consortium (no ca/ folder); provision into a new or empty folder`);
  }
}

/**
 * `federa provision consortium.yaml`: mints the root CA and the CKKS key set once, and writes the operator's
 * ca/ folder, the coordinator kit and one kit per site. Everything is built in a hidden sibling folder and
 * renamed into place, so a failure leaves no half-provisioned consortium behind.
 */
export async function provisionConsortium(options: ProvisionConsortiumOptions): Promise<ProvisionResult> {
  const config = parseConsortiumConfig(options.config);
  const outDir = options.outDir;
  await refuseExistingOutput(outDir, config);

  const material = options.generateCkksKeys ? validateCkksKeyMaterial(await options.generateCkksKeys()) : null;
  const ckks: CkksFiles | null = material ? { fingerprint: material.fingerprint, secretKey: material.secretKey, publicParams: material.publicParams } : null;
  const root = await createRootCa({ organization: config.consortium.name, validityDays: config.validityDays.ca });
  const ca: CertificateAuthorityPem = { certificatePem: root.certificatePem, privateKeyPem: root.privateKeyPem };
  const now = new Date();

  const server = await issueServerCertificate(ca, {
    dnsNames: config.coordinator.hostnames,
    ipAddresses: config.coordinator.ips,
    organization: config.consortium.name,
    validityDays: config.validityDays.server,
  });
  const sites: { id: string; issued: IssuedCertificate }[] = [];
  for (const site of config.sites) {
    sites.push({
      id: site.id,
      issued: await issueSiteCertificate(ca, { siteId: site.id, organization: config.consortium.name, validityDays: config.validityDays.site }),
    });
  }

  const consortium: ConsortiumState = {
    format: 'federa-consortium/1',
    name: config.consortium.name,
    createdAt: now.toISOString(),
    caFingerprint256: root.fingerprint256,
    coordinator: { hostnames: config.coordinator.hostnames, ips: config.coordinator.ips },
    validityDays: config.validityDays,
    ...(ckks ? { ckks: { fingerprint: ckks.fingerprint, secretKeySha256: sha256HexOf(ckks.secretKey), publicParamsSha256: sha256HexOf(ckks.publicParams) } } : {}),
  };
  const ledger: IssuedLedger = {
    format: 'federa-issued/1',
    certificates: [ledgerRecord(COORDINATOR_PARTICIPANT, 'server', server, now), ...sites.map((site) => ledgerRecord(site.id, 'site', site.issued, now))],
  };
  const state = { consortium, ledger, ca, ckks };

  await mkdir(dirname(outDir), { recursive: true });
  const staging = temporarySibling(outDir, 'provisioning');
  const staged = kitsLayout(staging);
  try {
    await makeKitDir(staging);
    await writeOperatorFiles(staged, state);
    await writeCoordinatorKit(staged.coordinatorDir, state, server, { dnsNames: config.coordinator.hostnames, ipAddresses: config.coordinator.ips });
    await makeKitDir(staged.sitesDir);
    for (const site of sites) {
      await writeSiteKit(staged.siteDir(site.id), state, site.id, site.issued);
    }
    // rename() replaces a missing or empty folder and fails on a non-empty one, so a provisioning racing
    // this one cannot be overwritten.
    try {
      await publishDir(staging, outDir);
    } catch (error) {
      const code = (error as NodeJS.ErrnoException).code;
      if (code === 'ENOTEMPTY' || code === 'EEXIST') {
        throw new ProvisionError(`${outDir} was filled by someone else while provisioning; nothing was written`);
      }
      throw error;
    }
  } catch (error) {
    await rm(staging, { recursive: true, force: true });
    throw error;
  }
  const layout = kitsLayout(outDir);
  log().debug({ outDir, sites: sites.length, ca: root.fingerprint256 }, 'consortium provisioned');
  return {
    outDir,
    caDir: layout.caDir,
    caFingerprint256: root.fingerprint256,
    caNotAfter: root.notAfter,
    ckksFingerprint: ckks?.fingerprint ?? null,
    coordinator: summary(COORDINATOR_PARTICIPANT, layout.coordinatorDir, server),
    sites: sites.map((site) => summary(site.id, layout.siteDir(site.id), site.issued)),
  };
}

async function readOperatorFile(path: string, hint: string): Promise<Buffer> {
  try {
    return await readFile(path);
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === 'ENOENT') throw new ProvisionError(`missing ${path}: ${hint}`);
    throw new ProvisionError(`cannot read ${path}: ${(error as Error).message}`);
  }
}

/**
 * Runs a command that changes an existing kits folder: checks there is a consortium, takes the folder's lock,
 * then loads the operator state inside the lock so the command works on what is on disk now.
 */
async function withOperatorState<T>(outDir: string, work: (state: OperatorState) => Promise<T>): Promise<T> {
  const layout = kitsLayout(outDir);
  if (!(await pathExists(layout.caDir))) {
    throw new ProvisionError(
      `missing CA: ${outDir} holds no ${layout.caDir} folder. Run \`federa provision consortium.yaml --out ${outDir}\` first, ` +
        `or point --out at the kits folder whose ca/ the operator kept (restore it from the offline copy if needed)`,
    );
  }
  return withLock(layout.lockFile, async () => work(await loadOperatorState(outDir)));
}

async function loadOperatorState(outDir: string): Promise<OperatorState> {
  const layout = kitsLayout(outDir);
  const restore = `restore ${layout.caDir} from the operator's offline copy`;
  const consortium = await readJsonFile(layout.caFile('consortium'), consortiumStateSchema, restore);
  const ledger = await readJsonFile(layout.caFile('issued'), issuedLedgerSchema, restore);
  const ca: CertificateAuthorityPem = {
    certificatePem: (await readOperatorFile(layout.caFile('caCertificate'), restore)).toString('utf8'),
    privateKeyPem: (await readOperatorFile(layout.caFile('caKey'), `missing CA key; ${restore}`)).toString('utf8'),
  };
  const caFingerprint = certificateFingerprint(ca.certificatePem);
  if (caFingerprint !== consortium.caFingerprint256) {
    throw new ProvisionError(
      `${layout.caFile('caCertificate')} is not this consortium's CA (fingerprint ${caFingerprint}, ${OPERATOR_FILES.consortium} records ${consortium.caFingerprint256})`,
    );
  }
  const shared = consortium.ckks;
  if (!shared) return { layout, consortium, ledger, ca, ckks: null };
  const secretKey = await readOperatorFile(layout.caFile('ckksSecretKey'), restore);
  const publicParams = await readOperatorFile(layout.caFile('ckksPublicParams'), restore);
  for (const [file, data, expected] of [
    [layout.caFile('ckksSecretKey'), secretKey, shared.secretKeySha256],
    [layout.caFile('ckksPublicParams'), publicParams, shared.publicParamsSha256],
  ] as const) {
    if (sha256HexOf(data) !== expected) {
      throw new ProvisionError(`${file} is damaged or replaced (its SHA-256 differs from ${OPERATOR_FILES.consortium}); ${restore}`);
    }
  }
  return {
    layout,
    consortium,
    ledger,
    ca,
    ckks: { fingerprint: shared.fingerprint, secretKey: new Uint8Array(secretKey), publicParams: new Uint8Array(publicParams) },
  };
}

function parseSiteId(siteId: string): string {
  const parsed = provisionSiteIdSchema.safeParse(siteId);
  if (!parsed.success) {
    throw new ProvisionError(`invalid site id "${siteId}": ${parsed.error.issues[0]?.message ?? 'invalid'}`);
  }
  return parsed.data;
}

function parseValidity(days: number | undefined, fallback: number): number {
  if (days === undefined) return fallback;
  const parsed = validityDaysSchema.safeParse(days);
  if (!parsed.success) {
    throw new ProvisionError(`invalid validity of ${days} days: must be a whole number from 1 to 36500`);
  }
  return parsed.data;
}

function knownSites(ledger: IssuedLedger): string[] {
  return [...new Set(ledger.certificates.filter((record) => record.kind === 'site').map((record) => record.participant))].sort();
}

async function saveLedger(state: OperatorState, ledger: IssuedLedger): Promise<void> {
  await replaceFile(state.layout.caFile('issued'), toJsonFile(ledger), PUBLIC_FILE_MODE);
  state.ledger = ledger;
}

/** Swaps a freshly written kit folder in for the old one (or puts it in place when there was none). */
async function installKit(staging: string, kitDir: string): Promise<void> {
  if (!(await pathExists(kitDir))) {
    await publishDir(staging, kitDir);
    return;
  }
  const retired = temporarySibling(kitDir, 'replaced');
  await publishDir(kitDir, retired);
  try {
    await publishDir(staging, kitDir);
  } catch (error) {
    await publishDir(retired, kitDir);
    throw error;
  }
  await rm(retired, { recursive: true, force: true });
}

function parseNames(values: string[] | undefined, schema: ZodType<string>, flag: string): string[] | undefined {
  if (values === undefined) return undefined;
  return values.map((value) => {
    const parsed = schema.safeParse(value);
    if (!parsed.success) throw new ProvisionError(`invalid ${flag} "${value}": ${parsed.error.issues[0]?.message ?? 'invalid'}`);
    return parsed.data;
  });
}

async function makeSitesDir(layout: KitsLayout): Promise<void> {
  if (!(await pathExists(layout.sitesDir))) await makeKitDir(layout.sitesDir);
}

/** Writes a kit into a hidden sibling and then swaps it in, cleaning up the sibling on failure. */
async function stageKit(kitDir: string, purpose: string, write: (dir: string) => Promise<void>): Promise<void> {
  const staging = temporarySibling(kitDir, purpose);
  try {
    await write(staging);
    await installKit(staging, kitDir);
  } catch (error) {
    await rm(staging, { recursive: true, force: true });
    throw error;
  }
}

/**
 * `federa provision add-site <id>`: a kit for a new site from the existing CA and the existing CKKS key set
 * (from ca/ckks-secret.key). No other kit is touched; ca/issued.json gains one record.
 */
export async function addSite(options: AddSiteOptions): Promise<ParticipantKitSummary> {
  const siteId = parseSiteId(options.siteId);
  return withOperatorState(options.outDir, async (state) => {
    const kitDir = state.layout.siteDir(siteId);
    if (knownSites(state.ledger).includes(siteId) || (await pathExists(kitDir))) {
      throw new ProvisionError(
        `duplicate site id "${siteId}": it was already provisioned (see ${state.layout.caFile('issued')}); ` +
          `to give it a new certificate run \`federa provision renew ${siteId} --out ${options.outDir}\``,
      );
    }
    const issued = await issueSiteCertificate(state.ca, {
      siteId,
      organization: state.consortium.name,
      validityDays: parseValidity(options.validityDays, state.consortium.validityDays.site),
    });
    const previous = state.ledger;
    // Recorded before it is released, as a CA should: every certificate that leaves is in the ledger.
    await saveLedger(state, { ...previous, certificates: [...previous.certificates, ledgerRecord(siteId, 'site', issued, new Date())] });
    try {
      await makeSitesDir(state.layout);
      await stageKit(kitDir, 'adding', (dir) => writeSiteKit(dir, state, siteId, issued));
    } catch (error) {
      // No kit, so no record: the site id stays free for another attempt.
      await saveLedger(state, previous);
      throw error;
    }
    log().debug({ siteId, fingerprint: issued.fingerprint256 }, 'site added');
    return summary(siteId, kitDir, issued);
  });
}

/**
 * `federa provision renew <participant>`: a new key pair and certificate from the same CA, written as a
 * complete kit that replaces the participant's old one; the CA, the CKKS key set and every other kit stay
 * as they are. The old certificate stays valid until it expires unless the site is also revoked.
 */
export async function renewParticipant(options: RenewOptions): Promise<ParticipantKitSummary> {
  const participant = options.participant === COORDINATOR_PARTICIPANT ? COORDINATOR_PARTICIPANT : parseSiteId(options.participant);
  if (participant !== COORDINATOR_PARTICIPANT && (options.hostnames !== undefined || options.ips !== undefined)) {
    throw new ProvisionError('hostnames and IP addresses belong to the coordinator certificate; they cannot be set when renewing a site');
  }
  const newHostnames = parseNames(options.hostnames, dnsNameSchema, 'hostname');
  const newIps = parseNames(options.ips, ipAddressSchema, 'IP address');
  if (newHostnames !== undefined && newHostnames.length === 0) {
    throw new ProvisionError('the coordinator certificate needs at least one hostname');
  }
  return withOperatorState(options.outDir, async (state) => {
    const now = new Date();
    if (participant === COORDINATOR_PARTICIPANT) {
      const hostnames = newHostnames ?? state.consortium.coordinator.hostnames;
      const ips = newIps ?? state.consortium.coordinator.ips;
      const issued = await issueServerCertificate(state.ca, {
        dnsNames: hostnames,
        ipAddresses: ips,
        organization: state.consortium.name,
        validityDays: parseValidity(options.validityDays, state.consortium.validityDays.server),
      });
      await saveLedger(state, { ...state.ledger, certificates: [...state.ledger.certificates, ledgerRecord(participant, 'server', issued, now)] });
      const kitDir = state.layout.coordinatorDir;
      await stageKit(kitDir, 'renewing', (dir) => writeCoordinatorKit(dir, state, issued, { dnsNames: hostnames, ipAddresses: ips }));
      if (newHostnames !== undefined || newIps !== undefined) {
        const consortium = { ...state.consortium, coordinator: { hostnames, ips } };
        await replaceFile(state.layout.caFile('consortium'), toJsonFile(consortium), PUBLIC_FILE_MODE);
      }
      log().debug({ participant, fingerprint: issued.fingerprint256 }, 'certificate renewed');
      return summary(participant, kitDir, issued);
    }

    const sites = knownSites(state.ledger);
    if (!sites.includes(participant)) {
      throw new ProvisionError(
        `unknown site "${participant}": it is not in ${state.layout.caFile('issued')} (known sites: ${sites.join(', ') || 'none'}); ` +
          `to add it run \`federa provision add-site ${participant} --out ${options.outDir}\``,
      );
    }
    const issued = await issueSiteCertificate(state.ca, {
      siteId: participant,
      organization: state.consortium.name,
      validityDays: parseValidity(options.validityDays, state.consortium.validityDays.site),
    });
    await saveLedger(state, { ...state.ledger, certificates: [...state.ledger.certificates, ledgerRecord(participant, 'site', issued, now)] });
    await makeSitesDir(state.layout);
    const kitDir = state.layout.siteDir(participant);
    await stageKit(kitDir, 'renewing', (dir) => writeSiteKit(dir, state, participant, issued));
    log().debug({ participant, fingerprint: issued.fingerprint256 }, 'certificate renewed');
    return summary(participant, kitDir, issued);
  });
}

/**
 * `federa provision revoke <site-id>`: revokes every certificate ever issued to the site (after a renewal
 * its older certificate would otherwise still open the door) and writes them to the coordinator kit's
 * revoked.json. Only that file and ca/issued.json change; ship the new revoked.json to the coordinator.
 */
export async function revokeSite(options: RevokeOptions): Promise<RevokeResult> {
  const siteId = parseSiteId(options.siteId);
  const reason = options.reason?.trim();
  if (reason !== undefined && (reason.length === 0 || reason.length > 500)) {
    throw new ProvisionError('the revocation reason must be 1 to 500 characters');
  }
  return withOperatorState(options.outDir, async (state) => {
    const records = state.ledger.certificates.filter((record) => record.kind === 'site' && record.participant === siteId);
    if (records.length === 0) {
      const sites = knownSites(state.ledger);
      throw new ProvisionError(`unknown site "${siteId}": no certificate was issued to it (known sites: ${sites.join(', ') || 'none'})`);
    }
    const revokedAt = new Date().toISOString();
    const revoked: IssuedCertificateRecord[] = [];
    const certificates = state.ledger.certificates.map((record) => {
      if (record.kind !== 'site' || record.participant !== siteId || record.revokedAt !== undefined) return record;
      const updated = { ...record, revokedAt, ...(reason === undefined ? {} : { revocationReason: reason }) };
      revoked.push(updated);
      return updated;
    });
    const ledger: IssuedLedger = { ...state.ledger, certificates };
    // revoked.json first: if the ledger write then fails, running revoke again rewrites the same list.
    const hasCoordinatorKit = await pathExists(join(state.layout.coordinatorDir, KIT_FILES.manifest));
    const revocationFile = hasCoordinatorKit ? join(state.layout.coordinatorDir, KIT_FILES.revoked) : null;
    if (revocationFile !== null) {
      const content = toJsonFile(revocationListFromLedger(ledger));
      const current = await readFile(revocationFile, 'utf8').catch(() => null);
      if (current !== content) await replaceFile(revocationFile, content, PUBLIC_FILE_MODE);
    }
    if (revoked.length > 0) await saveLedger(state, ledger);
    log().debug({ siteId, revoked: revoked.length }, 'site revoked');
    return { siteId, revoked, alreadyRevoked: records.length - revoked.length, revocationFile };
  });
}
