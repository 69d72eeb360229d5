import { resolve } from 'node:path';
import { parseArgs } from 'node:util';
import { PkiError } from '@federa/shared';
import type { CkksKeyGenerator } from './ckks.js';
import { COORDINATOR_PARTICIPANT, loadConsortiumFile } from './consortium.js';
import { ProvisionError } from './errors.js';
import { addSite, provisionConsortium, renewParticipant, revokeSite, type ParticipantKitSummary } from './provision.js';

export const PROVISION_USAGE = `Usage:
  federa provision <consortium.yaml> --out <dir> [--shared-key]
      Mint the consortium's root CA once and write one kit per participant. No kit holds a CKKS secret: studies use
      multiparty keys, made at each site. --shared-key also mints one CKKS key set shared by every site, for studies
      with aggregation: ckks (smaller uploads; any site with the coordinator can read every update).
  federa provision add-site <site-id> --out <dir> [--days <n>]
      Issue a kit for a new site from the existing CA (and shared key set, if there is one).
  federa provision renew <coordinator|site-id> --out <dir> [--days <n>] [--hostname <name>]... [--ip <address>]...
      Reissue one participant's key and certificate from the same CA (--hostname/--ip: coordinator only).
  federa provision revoke <site-id> --out <dir> [--reason <text>]
      Add every certificate of a site to the coordinator kit's revoked.json.
`;

export interface ProvisionCliIo {
  stdout: { write(text: string): unknown };
  stderr: { write(text: string): unknown };
  /** Relative paths are resolved against this; the process's working directory when absent. */
  cwd?: string;
  /** Makes the consortium's CKKS key set (only the first `provision` calls it). */
  generateCkksKeys: CkksKeyGenerator;
}

class UsageError extends Error {}

const SUBCOMMANDS = new Set(['add-site', 'renew', 'revoke']);

function parseDays(value: string | undefined): number | undefined {
  if (value === undefined) return undefined;
  if (!/^\d+$/.test(value)) throw new UsageError(`--days must be a whole number of days, got "${value}"`);
  return Number(value);
}

function date(value: Date): string {
  return value.toISOString().slice(0, 10);
}

function describeKit(kit: ParticipantKitSummary): string {
  return `${kit.kitDir}\n    certificate sha256 ${kit.fingerprint256}\n    serial ${kit.serialNumber}, valid until ${date(kit.notAfter)}\n`;
}

/**
 * `federa provision ...`. argv is what follows the word `provision`. Returns the exit code: 0 done,
 * 1 refused or failed (the message says why), 2 the command line itself is wrong.
 */
export async function runProvisionCli(argv: readonly string[], io: ProvisionCliIo): Promise<number> {
  let parsed;
  try {
    parsed = parseArgs({
      args: [...argv],
      strict: true,
      allowPositionals: true,
      options: {
        out: { type: 'string' },
        days: { type: 'string' },
        hostname: { type: 'string', multiple: true },
        ip: { type: 'string', multiple: true },
        reason: { type: 'string' },
        'shared-key': { type: 'boolean' },
        help: { type: 'boolean', short: 'h' },
      },
    });
  } catch (error) {
    io.stderr.write(`error: ${(error as Error).message}\n\n${PROVISION_USAGE}`);
    return 2;
  }
  const { values, positionals } = parsed;
  if (values.help === true) {
    io.stdout.write(PROVISION_USAGE);
    return 0;
  }
  try {
    const [first, second] = positionals;
    if (first === undefined) throw new UsageError('name a consortium.yaml file or a subcommand (add-site, renew, revoke)');
    if (values.out === undefined) throw new UsageError('--out <dir> is required: the kits folder to create or update');
    const outDir = resolve(io.cwd ?? process.cwd(), values.out);
    const subcommand = SUBCOMMANDS.has(first) ? first : null;
    const expected = subcommand === null ? 1 : 2;
    if (positionals.length !== expected) {
      throw new UsageError(
        subcommand === null
          ? `expected one consortium.yaml file, got ${positionals.length} arguments: ${positionals.join(' ')}`
          : `${subcommand} takes exactly one ${subcommand === 'renew' ? 'participant' : 'site id'}, got ${positionals.length === 1 ? 'none' : positionals.slice(1).join(' ')}`,
      );
    }
    const sansGiven = values.hostname !== undefined || values.ip !== undefined;
    if (sansGiven && !(subcommand === 'renew' && second === COORDINATOR_PARTICIPANT)) {
      throw new UsageError('--hostname and --ip only apply to `renew coordinator`; for a new consortium put them in consortium.yaml');
    }
    if (values.days !== undefined && (subcommand === null || subcommand === 'revoke')) {
      throw new UsageError('--days applies to add-site and renew; for a new consortium set validityDays in consortium.yaml');
    }
    if (values.reason !== undefined && subcommand !== 'revoke') throw new UsageError('--reason only applies to revoke');
    if (values['shared-key'] === true && subcommand !== null) throw new UsageError('--shared-key applies when provisioning a new consortium');

    switch (subcommand) {
      case null: {
        const config = await loadConsortiumFile(resolve(io.cwd ?? process.cwd(), first));
        const shared = values['shared-key'] === true;
        const result = await provisionConsortium({ config, outDir, ...(shared ? { generateCkksKeys: io.generateCkksKeys } : {}) });
        io.stdout.write(
          `Provisioned consortium "${config.consortium.name}" in ${result.outDir}\n` +
            `  root CA sha256 ${result.caFingerprint256}, valid until ${date(result.caNotAfter)}\n` +
            (result.ckksFingerprint ? `  shared CKKS key set ${result.ckksFingerprint}\n` : `  no shared CKKS key: each site makes its own multiparty key shares\n`) +
            `  coordinator: ${describeKit(result.coordinator)}` +
            result.sites.map((site) => `  site ${site.participant}: ${describeKit(site)}`).join('') +
            `Keep ${result.caDir} offline: it holds the CA key${result.ckksFingerprint ? ' and the shared CKKS secret key' : ''} and is needed for add-site, renew and revoke.\n` +
            `Send each participant only its own kit folder.\n`,
        );
        return 0;
      }
      case 'add-site': {
        const kit = await addSite({ outDir, siteId: second!, validityDays: parseDays(values.days) });
        io.stdout.write(`Added site ${kit.participant}: ${describeKit(kit)}Send that folder to the site; no other kit changed.\n`);
        return 0;
      }
      case 'renew': {
        const kit = await renewParticipant({
          outDir,
          participant: second!,
          validityDays: parseDays(values.days),
          hostnames: values.hostname,
          ips: values.ip,
        });
        io.stdout.write(
          `Renewed ${kit.participant === COORDINATOR_PARTICIPANT ? 'the coordinator' : `site ${kit.participant}`}: ${describeKit(kit)}` +
            `Replace the participant's kit with this folder. The previous certificate stays valid until it expires` +
            `${kit.participant === COORDINATOR_PARTICIPANT ? '' : ` unless revoked (federa provision revoke ${kit.participant})`}.\n`,
        );
        return 0;
      }
      case 'revoke': {
        const result = await revokeSite({ outDir, siteId: second!, reason: values.reason });
        const lines = result.revoked.map((record) => `  revoked ${record.fingerprint256} (serial ${record.serialNumber})\n`).join('');
        const where =
          result.revocationFile === null
            ? `The coordinator kit is missing from ${outDir}; run \`federa provision renew coordinator --out ${values.out}\` to rebuild it with the revocations.\n`
            : `Updated ${result.revocationFile}: copy it to the coordinator.\n`;
        io.stdout.write(
          result.revoked.length === 0
            ? `Site ${result.siteId} was already revoked (${result.alreadyRevoked} certificate(s)); nothing new to revoke.\n${where}`
            : `Site ${result.siteId}:\n${lines}${where}`,
        );
        return 0;
      }
      default:
        throw new UsageError(`unknown subcommand ${subcommand}`);
    }
  } catch (error) {
    if (error instanceof UsageError) {
      io.stderr.write(`error: ${error.message}\n\n${PROVISION_USAGE}`);
      return 2;
    }
    if (error instanceof ProvisionError || error instanceof PkiError) {
      io.stderr.write(`error: ${error.message}\n`);
      return 1;
    }
    // File-system failures (permissions, full disk) are the operator's to fix too: say what happened.
    io.stderr.write(`error: ${(error as Error).message ?? String(error)}\n`);
    return 1;
  }
}
