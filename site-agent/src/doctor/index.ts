import { access, constants, readFile, stat } from 'node:fs/promises';
import { availableParallelism } from 'node:os';
import { resolve } from 'node:path';
import { formatLedgerVerification, readSiteKit } from '@federa/shared';
import type { SiteConfig } from '../config/index.js';
import { checkPacsSource, listFiles, parseLabelsCsv } from '../data/index.js';
import { ledgerPath, verifyLedger } from '../ledger/index.js';
import { backendAvailability, configuredThreads, initBackend, trainingThreads } from '../train/index.js';
import { checkCoordinatorAll } from './coordinator.js';
import { checkDiskSpace, checkStateDir } from './state.js';
import type { DoctorCheck } from './types.js';

export type { DoctorCheck } from './types.js';
export { judgeFreeSpace, DISK_FAIL_BYTES, DISK_WARN_BYTES } from './state.js';

const CERTIFICATE_WARNING_DAYS = 30;

/**
 * `federa-site doctor`: everything a hospital's IT needs to know before the first round, each with what to do
 * when it fails: the kit (certificates and CKKS key), the data folder and labels, the state folder (writable, free
 * space), the compute backend, whether the coordinator's certificate names its address, whether it answers over
 * mutual TLS, and whether it still accepts this site's certificate (not revoked).
 */
export async function runDoctor(config: SiteConfig): Promise<DoctorCheck[]> {
  const kit = await checkKit(config);
  const data = config.data.source?.kind === 'dicomweb' ? await checkPacsSource(config.data) : await checkData(config);
  const state = await checkStateDir(config.stateDir);
  // Free space is only meaningful on a folder that exists, which the write test makes sure of.
  const disk = state.ok ? await checkDiskSpace(config.stateDir) : { name: 'disk space', ok: false, detail: `not checked: ${config.stateDir} is not usable`, hint: 'fix the state folder first' };
  return [kit, data, state, disk, checkPolicy(config), await checkLedger(config), await checkBackend(config), ...(await checkCoordinatorAll(config))];
}

async function checkKit(config: SiteConfig): Promise<DoctorCheck> {
  const name = 'site kit';
  if (!config.coordinator.kit) {
    return {
      name,
      ok: true,
      warning: true,
      detail: 'none: running in the insecure development mode (no TLS, no encryption key)',
      hint: 'for real data, set coordinator.kit to the folder `federa provision` made for this site',
    };
  }
  try {
    const kit = await readSiteKit(config.coordinator.kit);
    if (kit.siteId !== config.site.id) {
      return {
        name,
        ok: false,
        detail: `the kit belongs to site "${kit.siteId}", the config says "${config.site.id}"`,
        hint: 'use this site\'s own kit, or correct site.id',
      };
    }
    const expires = new Date(kit.manifest.certificate.notAfter);
    const days = Math.floor((expires.getTime() - Date.now()) / 86_400_000);
    const soon = days < CERTIFICATE_WARNING_DAYS;
    const warnings = [...kit.warnings, ...(soon ? [`certificate expires in ${days} days`] : [])];
    return {
      name,
      ok: true,
      ...(warnings.length > 0 ? { warning: true, hint: `${warnings.join('; ')}; ask the consortium operator for \`federa provision renew ${kit.siteId}\`` } : {}),
      detail: `site ${kit.siteId} of consortium "${kit.manifest.consortium}", certificate valid until ${expires.toISOString().slice(0, 10)}, ${kit.manifest.ckks ? `shared CKKS key ${kit.manifest.ckks.fingerprint.slice(0, 16)}` : 'no shared CKKS key (multiparty keys only)'}`,
    };
  } catch (error) {
    return {
      name,
      ok: false,
      detail: (error as Error).message,
      hint: 'check coordinator.kit points at the unpacked kit folder from the consortium operator',
    };
  }
}

async function checkData(config: SiteConfig): Promise<DoctorCheck> {
  const name = 'data';
  try {
    const info = await stat(config.data.dir);
    if (!info.isDirectory()) throw new Error(`${config.data.dir} is not a folder`);
  } catch (error) {
    return { name, ok: false, detail: (error as Error).message, hint: 'set data.dir to the folder holding the DICOM, PNG or JPEG files' };
  }
  const tally = (labels: string[]): string => {
    const classes = new Map<string, number>();
    for (const label of labels) classes.set(label, (classes.get(label) ?? 0) + 1);
    return [...classes.entries()].map(([label, n]) => `${label} ${n}`).join(', ');
  };
  if (config.data.labels === undefined) {
    let files: string[];
    try {
      files = await listFiles(config.data.dir);
    } catch (error) {
      return { name, ok: false, detail: (error as Error).message, hint: 'data.dir must be readable by the agent\'s user' };
    }
    const inFolders = files.filter((f) => f.includes('/'));
    const loose = files.length - inFolders.length;
    return {
      name,
      ok: inFolders.length > 0,
      ...(loose > 0 || inFolders.length === 0
        ? { warning: true, hint: `each class must be a folder under data.dir${loose > 0 ? `; ${loose} files outside a class folder will be skipped` : ''}` }
        : {}),
      detail: `${inFolders.length} files in class folders (${tally(inFolders.map((f) => f.slice(0, f.indexOf('/'))))})`,
    };
  }
  let table;
  try {
    table = parseLabelsCsv(await readFile(config.data.labels, 'utf8'), config.data.labels);
  } catch (error) {
    return {
      name,
      ok: false,
      detail: (error as Error).message,
      hint: 'data.labels must be a CSV with a "label" column and one of "file", "sop_instance_uid", "series_instance_uid" or "study_instance_uid"',
    };
  }
  const counts = tally(table.rows.map((r) => r.label));
  if (table.keyedBy !== 'file') {
    // UIDs are only matched once the files' headers are read; that is `data scan`'s job, not a quick check's.
    const what = { sop_instance_uid: 'SOP instances', series_instance_uid: 'series', study_instance_uid: 'studies' }[table.keyedBy];
    return {
      name,
      ok: table.rows.length > 0,
      detail: `${table.rows.length} labelled ${what} (${counts})`,
      hint: 'run `federa-site data scan --config site.yaml` to match them against the files',
    };
  }
  let missing = 0;
  for (const row of table.rows) {
    try {
      await access(resolve(config.data.dir, row.key), constants.R_OK);
    } catch {
      missing++;
    }
  }
  return {
    name,
    ok: table.rows.length > missing,
    ...(missing > 0
      ? { warning: true, hint: `${missing} labelled files are missing or unreadable; they will be skipped (see the agent log)` }
      : {}),
    detail: `${table.rows.length} labelled files (${counts})${missing > 0 ? `, ${missing} missing` : ''}`,
  };
}

/** What the hospital's policy lets run and leave; autoApprove is flagged, being for demos and tests only. */
function checkPolicy(config: SiteConfig): DoctorCheck {
  const p = config.policy;
  const detail =
    `${p.requireEncryption ? 'encrypted studies only' : 'plaintext studies allowed'}, at least ${p.minParticipants} sites per aggregate, ` +
    `at most ${p.maxRounds} rounds, shares ${p.shareMetrics === 'none' ? 'no metrics' : p.shareMetrics === 'aggregate' ? 'figures without counts' : `counts (at least ${p.minCountPerBin} images per histogram bin)`}, ` +
    `${p.verifySum ? 'checks every multiparty sum it helps decrypt' : 'trusts the coordinator\'s multiparty sums unchecked'}, ` +
    `${p.autoApprove ? 'approves every study automatically' : 'runs only studies approved with `federa-site approve`'}`;
  const worrying = p.autoApprove || !p.requireEncryption || !p.verifySum;
  return {
    name: 'site policy',
    ok: true,
    detail,
    ...(worrying
      ? {
          warning: true,
          hint:
            `${p.autoApprove ? 'policy.autoApprove is for demos and local tests only; ' : ''}` +
            `${p.requireEncryption ? '' : 'policy.requireEncryption: false lets the coordinator see this site\'s updates; '}` +
            `${p.verifySum ? '' : 'policy.verifySum: false lets a dishonest coordinator have one site\'s update decrypted instead of a sum; '}` +
            'set the defaults for real data',
        }
      : {}),
  };
}

/** The privacy ledger must be an unbroken chain: the agent will not append to a broken one. */
async function checkLedger(config: SiteConfig): Promise<DoctorCheck> {
  const name = 'privacy ledger';
  const path = ledgerPath(config.stateDir);
  try {
    await access(path, constants.R_OK);
  } catch {
    return { name, ok: true, detail: `none yet at ${path}; the agent starts it at its first start` };
  }
  const caPem = config.coordinator.kit ? await readFile(resolve(config.coordinator.kit, 'ca.pem'), 'utf8').catch(() => undefined) : undefined;
  const verification = await verifyLedger(path, caPem ? { caPem } : {});
  return verification.ok
    ? { name, ok: true, detail: formatLedgerVerification(verification).split('\n')[0]! }
    : {
        name,
        ok: false,
        detail: formatLedgerVerification(verification).split('\n')[0]!,
        hint: 'run `federa-site ledger verify --config site.yaml` for every problem; the agent will not send anything until the ledger is intact',
      };
}

async function checkBackend(config: SiteConfig): Promise<DoctorCheck> {
  const name = 'compute backend';
  try {
    const backend = await initBackend(config.training.backend);
    const gpu = backend.name === 'tensorflow-gpu' || backend.name === 'webgpu';
    const threads = trainingThreads(configuredThreads(config.training.threads), backend.name);
    const used =
      backend.name === 'wasm' || backend.name === 'cpu'
        ? `training on ${threads} thread${threads === 1 ? '' : 's'} (training.threads: ${config.training.threads})`
        : gpu
          ? 'training on the GPU'
          : 'training on 1 thread (native TensorFlow spreads each kernel over the cores)';
    // Every backend in the order auto tries them, so IT sees why a faster one was passed over.
    const order = (await backendAvailability()).map((b) => `${b.name}: ${b.name === backend.name ? 'in use' : b.available ? 'available' : 'unavailable'} (${b.detail})`);
    return {
      name,
      ok: true,
      detail: `${backend.name}: ${backend.detail}; ${gpu ? 'GPU' : 'no GPU'}, ${availableParallelism()} CPU threads on this machine, ${used}. Backends in auto order: ${order.join('; ')}`,
      ...(gpu
        ? {}
        : {
            hint: "for GPU training: with a GPU and its vendor's Vulkan driver plus libvulkan1, the webgpu backend (installed) is chosen by itself; or install @tensorflow/tfjs-node-gpu from the hospital mirror (TFJS_NODE_CDN_STORAGE / TFJS_NODE_BASE_URI)",
          }),
    };
  } catch (error) {
    return { name, ok: false, detail: (error as Error).message, hint: 'set training.backend to auto, or install the backend named' };
  }
}

/** Human-readable report, one line per check plus its hint. */
export function formatDoctorReport(checks: DoctorCheck[]): string {
  const lines: string[] = [];
  for (const check of checks) {
    const mark = !check.ok ? 'FAIL' : check.warning ? 'WARN' : ' ok ';
    lines.push(`[${mark}] ${check.name}: ${check.detail}`);
    if (check.hint && (!check.ok || check.warning)) lines.push(`       -> ${check.hint}`);
  }
  const failed = checks.filter((c) => !c.ok).length;
  lines.push(failed === 0 ? 'All checks passed.' : `${failed} check(s) failed.`);
  return `${lines.join('\n')}\n`;
}
