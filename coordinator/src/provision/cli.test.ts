import { randomBytes } from 'node:crypto';
import { mkdtemp, readdir, readFile, rm, stat, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { parseRevocationList } from '@federa/shared';
import { runProvisionCli, type ProvisionCliIo } from './cli.js';

interface Run {
  code: number;
  stdout: string;
  stderr: string;
}

let work: string;

async function run(...argv: string[]): Promise<Run> {
  let stdout = '';
  let stderr = '';
  const io: ProvisionCliIo = {
    stdout: { write: (text: string) => (stdout += text) },
    stderr: { write: (text: string) => (stderr += text) },
    cwd: work,
    generateCkksKeys: async () => ({ secretKey: new Uint8Array(randomBytes(64)), publicParams: new Uint8Array(randomBytes(64)), fingerprint: 'ckks-test-1' }),
  };
  const code = await runProvisionCli(argv, io);
  return { code, stdout, stderr };
}

const yaml = `consortium:
  name: North imaging
coordinator:
  hostnames: [coordinator.example.org]
  ips: [127.0.0.1]
sites:
  - id: hospital-a
  - id: hospital-b
`;

beforeEach(async () => {
  work = await mkdtemp(join(tmpdir(), 'federa-provision-cli-'));
  await writeFile(join(work, 'consortium.yaml'), yaml);
});

afterEach(async () => {
  await rm(work, { recursive: true, force: true });
});

describe('federa provision', () => {
  it('provisions, refuses to provision again, adds, renews and revokes', async () => {
    const first = await run('consortium.yaml', '--out', 'kits/', '--shared-key');
    expect(first).toMatchObject({ code: 0, stderr: '' });
    expect(first.stdout).toContain('Provisioned consortium "North imaging"');
    expect(first.stdout).toMatch(/root CA sha256 ([0-9A-F]{2}:){31}[0-9A-F]{2}/);
    expect(first.stdout).toContain('shared CKKS key set ckks-test-1');
    expect(first.stdout).toContain(`Keep ${join(work, 'kits', 'ca')} offline`);

    const again = await run('consortium.yaml', '--out', 'kits');
    expect(again.code).toBe(1);
    expect(again.stderr).toMatch(/already holds a provisioned consortium.*federa provision add-site <id>/s);

    const added = await run('add-site', 'hospital-c', '--out', 'kits', '--days', '90');
    expect(added.code).toBe(0);
    expect(added.stdout).toContain(`Added site hospital-c: ${join(work, 'kits', 'sites', 'hospital-c')}`);
    expect((await stat(join(work, 'kits/sites/hospital-c/site-key.pem'))).mode & 0o777).toBe(0o600);

    const duplicate = await run('add-site', 'hospital-c', '--out', 'kits');
    expect(duplicate.code).toBe(1);
    expect(duplicate.stderr).toContain('duplicate site id "hospital-c"');

    const renewed = await run('renew', 'coordinator', '--out', 'kits', '--hostname', 'a.example.org', '--hostname', 'b.example.org', '--ip', '10.0.0.9');
    expect(renewed.code).toBe(0);
    expect(renewed.stdout).toContain('Renewed the coordinator');

    const revoked = await run('revoke', 'hospital-a', '--out', 'kits', '--reason', 'decommissioned');
    expect(revoked.code).toBe(0);
    expect(revoked.stdout).toMatch(/Site hospital-a:\n {2}revoked ([0-9A-F]{2}:){31}[0-9A-F]{2}/);
    const list = parseRevocationList(await readFile(join(work, 'kits/coordinator/revoked.json'), 'utf8'));
    expect(list.map((entry) => [entry.siteId, entry.reason])).toEqual([['hospital-a', 'decommissioned']]);

    const revokedAgain = await run('revoke', 'hospital-a', '--out', 'kits');
    expect(revokedAgain.code).toBe(0);
    expect(revokedAgain.stdout).toContain('was already revoked');

    const unknown = await run('renew', 'hospital-z', '--out', 'kits');
    expect(unknown).toMatchObject({ code: 1 });
    expect(unknown.stderr).toContain('unknown site "hospital-z"');
  });

  it('reports an invalid consortium.yaml field by name and writes nothing', async () => {
    await writeFile(join(work, 'bad.yaml'), yaml.replace('id: hospital-b', 'id: hospital-a'));
    const result = await run('bad.yaml', '--out', 'kits');
    expect(result.code).toBe(1);
    expect(result.stderr).toContain('sites.1.id: duplicate site id "hospital-a" (also sites.0.id)');
    expect((await readdir(work)).sort()).toEqual(['bad.yaml', 'consortium.yaml']);
  });

  it('says what is wrong with the command line (exit 2)', async () => {
    const cases: [string[], RegExp][] = [
      [['consortium.yaml'], /--out <dir> is required/],
      [[], /name a consortium\.yaml file or a subcommand/],
      [['add-site', '--out', 'kits'], /add-site takes exactly one site id, got none/],
      [['add-site', 'a', 'b', '--out', 'kits'], /add-site takes exactly one site id, got a b/],
      [['add-site', 'a', '--out', 'kits', '--hostname', 'x.org'], /--hostname and --ip only apply to `renew coordinator`/],
      [['consortium.yaml', '--out', 'kits', '--days', '10'], /--days applies to add-site and renew/],
      [['add-site', 'a', '--out', 'kits', '--days', 'ten'], /--days must be a whole number of days, got "ten"/],
      [['renew', 'a', '--out', 'kits', '--reason', 'x'], /--reason only applies to revoke/],
      [['consortium.yaml', '--out', 'kits', '--force'], /Unknown option '--force'/],
    ];
    for (const [argv, message] of cases) {
      const result = await run(...argv);
      expect(result.code, argv.join(' ')).toBe(2);
      expect(result.stderr, argv.join(' ')).toMatch(message);
      expect(result.stderr).toContain('Usage:');
    }
    expect(await readdir(work)).toEqual(['consortium.yaml']);
  });

  it('reports a missing CA and a missing config file (exit 1)', async () => {
    const missingCa = await run('add-site', 'hospital-c', '--out', 'kits');
    expect(missingCa.code).toBe(1);
    expect(missingCa.stderr).toMatch(/missing CA: .*kits holds no .*ca folder/);
    const missingFile = await run('nope.yaml', '--out', 'kits');
    expect(missingFile.code).toBe(1);
    expect(missingFile.stderr).toContain('nope.yaml does not exist');
  });

  it('prints usage for --help', async () => {
    const result = await run('--help');
    expect(result).toMatchObject({ code: 0, stderr: '' });
    expect(result.stdout).toContain('federa provision add-site <site-id> --out <dir>');
  });
});
