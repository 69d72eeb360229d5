import { createHash, randomBytes } from 'node:crypto';
import { chmod, copyFile, mkdir, mkdtemp, readdir, readFile, rm, stat, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join, relative } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import {
  inspectCertificate,
  readCoordinatorKit,
  readSiteKit,
  verifyCertificate,
  findRevocation,
  type CoordinatorKitManifest,
  type SiteKitManifest,
} from '@federa/shared';
import type { CkksKeyMaterial } from './ckks.js';
import { parseConsortiumConfig, type ConsortiumConfig } from './consortium.js';
import { addSite, provisionConsortium, renewParticipant, revokeSite } from './provision.js';

/** Stands in for the CKKS module: random bytes are enough to check where each part of the key set goes. */
function fakeCkks(): { material: CkksKeyMaterial; generate: () => Promise<CkksKeyMaterial>; calls: () => number } {
  const secretKey = new Uint8Array(randomBytes(96));
  const publicParams = new Uint8Array(randomBytes(160));
  const fingerprint = `ckks-${createHash('sha256').update(secretKey).update(publicParams).digest('hex').slice(0, 32)}`;
  const material = { secretKey, publicParams, fingerprint };
  let count = 0;
  return {
    material,
    generate: async () => {
      count += 1;
      return material;
    },
    calls: () => count,
  };
}

const config: ConsortiumConfig = parseConsortiumConfig({
  consortium: { name: 'North imaging' },
  coordinator: { hostnames: ['coordinator.example.org', 'localhost'], ips: ['127.0.0.1'] },
  sites: [{ id: 'hospital-a' }, { id: 'hospital-b' }],
  validityDays: { site: 200 },
});

interface FileState {
  sha256: string;
  mode: number;
}

/** Every file under a folder with its content hash and permission bits. */
async function snapshot(root: string): Promise<Map<string, FileState>> {
  const files = new Map<string, FileState>();
  async function walk(dir: string): Promise<void> {
    for (const entry of await readdir(dir, { withFileTypes: true })) {
      const path = join(dir, entry.name);
      if (entry.isDirectory()) {
        await walk(path);
      } else {
        const data = await readFile(path);
        files.set(relative(root, path), { sha256: createHash('sha256').update(data).digest('hex'), mode: (await stat(path)).mode & 0o777 });
      }
    }
  }
  await walk(root);
  return files;
}

/** Paths whose content or mode differs, plus added and removed paths. */
function changes(before: Map<string, FileState>, after: Map<string, FileState>): { changed: string[]; added: string[]; removed: string[] } {
  const changed = [...before.keys()].filter((path) => after.has(path) && JSON.stringify(after.get(path)) !== JSON.stringify(before.get(path)));
  return {
    changed: changed.sort(),
    added: [...after.keys()].filter((path) => !before.has(path)).sort(),
    removed: [...before.keys()].filter((path) => !after.has(path)).sort(),
  };
}

async function mode(path: string): Promise<number> {
  return (await stat(path)).mode & 0o777;
}

async function json<T>(path: string): Promise<T> {
  return JSON.parse(await readFile(path, 'utf8')) as T;
}

let work: string;
let out: string;

beforeEach(async () => {
  work = await mkdtemp(join(tmpdir(), 'federa-provision-'));
  out = join(work, 'kits');
});

afterEach(async () => {
  await rm(work, { recursive: true, force: true });
});

describe('provisionConsortium', () => {
  it('writes the operator folder and one kit per participant, with private keys at mode 0600', async () => {
    const ckks = fakeCkks();
    const result = await provisionConsortium({ config, outDir: out, generateCkksKeys: ckks.generate });
    expect(ckks.calls()).toBe(1);

    const files = await snapshot(out);
    expect([...files.keys()].sort()).toEqual(
      [
        'ca/ca.pem',
        'ca/ca-key.pem',
        'ca/ckks-secret.key',
        'ca/ckks-public.params',
        'ca/consortium.json',
        'ca/issued.json',
        'coordinator/ca.pem',
        'coordinator/server.pem',
        'coordinator/server-key.pem',
        'coordinator/ckks-public.params',
        'coordinator/revoked.json',
        'coordinator/kit.json',
        ...['hospital-a', 'hospital-b'].flatMap((id) =>
          ['ca.pem', 'site.pem', 'site-key.pem', 'ckks-secret.key', 'ckks-public.params', 'kit.json'].map((file) => `sites/${id}/${file}`),
        ),
      ].sort(),
    );
    for (const secret of ['ca/ca-key.pem', 'ca/ckks-secret.key', 'coordinator/server-key.pem', 'sites/hospital-a/site-key.pem', 'sites/hospital-a/ckks-secret.key', 'sites/hospital-b/site-key.pem', 'sites/hospital-b/ckks-secret.key']) {
      expect(await mode(join(out, secret)), secret).toBe(0o600);
    }
    expect(await mode(join(out, 'coordinator/server.pem'))).toBe(0o644);
    for (const dir of ['ca', 'coordinator', 'sites/hospital-a']) {
      expect(await mode(join(out, dir)), dir).toBe(0o700);
    }
    expect(await readFile(join(out, 'coordinator/revoked.json'), 'utf8')).toBe('[]\n');

    // No participant kit holds the CA key; the coordinator kit holds no byte sequence of the CKKS secret key.
    const caKey = await readFile(join(out, 'ca/ca-key.pem'), 'utf8');
    const secretHex = Buffer.from(ckks.material.secretKey).toString('hex');
    for (const path of files.keys()) {
      if (path.startsWith('ca/')) continue;
      const data = await readFile(join(out, path));
      expect(data.toString('utf8').includes(caKey.trim()), path).toBe(false);
      if (path.startsWith('coordinator/')) {
        expect(data.includes(Buffer.from(ckks.material.secretKey)), path).toBe(false);
        expect(data.toString('utf8').includes(secretHex), path).toBe(false);
      }
    }

    const coordinator = await readCoordinatorKit(join(out, 'coordinator'));
    expect(coordinator.warnings).toEqual([]);
    expect(coordinator.manifest).toMatchObject({
      kind: 'coordinator',
      consortium: 'North imaging',
      ca: { fingerprint256: result.caFingerprint256 },
      certificate: { fingerprint256: result.coordinator.fingerprint256, dnsNames: ['coordinator.example.org', 'localhost'], ipAddresses: ['127.0.0.1'] },
      ckks: { fingerprint: ckks.material.fingerprint },
    });
    expect(Buffer.from(coordinator.ckksPublicParams).equals(Buffer.from(ckks.material.publicParams))).toBe(true);
    expect(inspectCertificate(coordinator.certificatePem).dnsNames).toEqual(['coordinator.example.org', 'localhost']);

    for (const site of result.sites) {
      const kit = await readSiteKit(site.kitDir);
      expect(kit.siteId).toBe(site.participant);
      expect(kit.manifest).toMatchObject({ kind: 'site', ca: { fingerprint256: result.caFingerprint256 }, certificate: { fingerprint256: site.fingerprint256 }, ckks: { fingerprint: ckks.material.fingerprint } });
      expect(Buffer.from(kit.ckksSecretKey).equals(Buffer.from(ckks.material.secretKey))).toBe(true);
      const days = (Date.parse(kit.manifest.certificate.notAfter) - Date.parse(kit.manifest.certificate.notBefore)) / 86_400_000;
      expect(days).toBe(200);
      expect(verifyCertificate(kit.certificatePem, coordinator.caPem, { purpose: 'client' })).toMatchObject({ ok: true, certificate: { siteId: site.participant } });
    }
  });

  it('without a shared key (the default), puts no CKKS secret in any kit, and adds sites the same way', async () => {
    await provisionConsortium({ config, outDir: out });
    const files = [...(await snapshot(out)).keys()];
    expect(files.filter((f) => f.includes('ckks'))).toEqual([]);
    const site = await readSiteKit(join(out, 'sites', 'hospital-a'));
    expect(site.ckksSecretKey).toBeNull();
    expect(site.manifest.ckks).toBeUndefined();
    const coordinator = await readCoordinatorKit(join(out, 'coordinator'));
    expect(coordinator.ckksPublicParams).toBeNull();
    const added = await addSite({ outDir: out, siteId: 'hospital-c' });
    expect((await readdir(added.kitDir)).sort()).toEqual(['ca.pem', 'kit.json', 'site-key.pem', 'site.pem']);
    expect((await readSiteKit(added.kitDir)).ckksSecretKey).toBeNull();
  });

  it('refuses to run again on the same folder and changes nothing, naming the commands to use instead', async () => {
    const ckks = fakeCkks();
    await provisionConsortium({ config, outDir: out, generateCkksKeys: ckks.generate });
    const before = await snapshot(out);
    const grown = parseConsortiumConfig({ ...config, sites: [...config.sites, { id: 'hospital-c' }] });
    const again = provisionConsortium({ config: grown, outDir: out, generateCkksKeys: ckks.generate });
    await expect(again).rejects.toThrow(/already holds a provisioned consortium.*would mint a new root CA/s);
    await expect(provisionConsortium({ config: grown, outDir: out, generateCkksKeys: ckks.generate })).rejects.toThrow(
      /add-site <id>.*renew <coordinator\|site-id>.*without a kit: hospital-c/s,
    );
    expect(ckks.calls()).toBe(1);
    expect(changes(before, await snapshot(out))).toEqual({ changed: [], added: [], removed: [] });
    expect((await readdir(work)).sort()).toEqual(['kits']);
  });

  it('refuses a folder that is not empty and provisions into an empty one', async () => {
    await writeFile(join(work, 'file'), 'x');
    await expect(provisionConsortium({ config, outDir: join(work, 'file'), generateCkksKeys: fakeCkks().generate })).rejects.toThrow(/is not a folder/);
    await rm(join(work, 'file'));
    await mkdir(out);
    await writeFile(join(out, 'notes.txt'), 'mine');
    await expect(provisionConsortium({ config, outDir: out, generateCkksKeys: fakeCkks().generate })).rejects.toThrow(/is not empty and holds no consortium/);
    expect(await readdir(out)).toEqual(['notes.txt']);
    const empty = join(work, 'empty');
    await mkdir(empty);
    await provisionConsortium({ config, outDir: empty, generateCkksKeys: fakeCkks().generate });
    expect((await readdir(empty)).sort()).toEqual(['ca', 'coordinator', 'sites']);
  });

  it('writes nothing when the CKKS generator fails or hands back its secret as public parameters', async () => {
    await expect(
      provisionConsortium({
        config,
        outDir: out,
        generateCkksKeys: async () => {
          throw new Error('SEAL exploded');
        },
      }),
    ).rejects.toThrow('SEAL exploded');
    const secret = new Uint8Array(randomBytes(32));
    await expect(
      provisionConsortium({ config, outDir: out, generateCkksKeys: async () => ({ secretKey: secret, publicParams: secret, fingerprint: 'x' }) }),
    ).rejects.toThrow(/publicParams are identical to secretKey/);
    await expect(
      provisionConsortium({ config, outDir: out, generateCkksKeys: async () => ({ secretKey: new Uint8Array(), publicParams: secret, fingerprint: 'has space' }) }),
    ).rejects.toThrow(/secretKey is empty; fingerprint must be/);
    expect(await readdir(work)).toEqual([]);
  });
});

describe('addSite', () => {
  it('issues a kit from the existing CA and CKKS key set and changes no other kit', async () => {
    const ckks = fakeCkks();
    const result = await provisionConsortium({ config, outDir: out, generateCkksKeys: ckks.generate });
    const before = await snapshot(out);
    const ledgerBefore = await json<{ certificates: unknown[] }>(join(out, 'ca/issued.json'));

    const added = await addSite({ outDir: out, siteId: 'hospital-c', validityDays: 30 });
    const after = await snapshot(out);
    expect(changes(before, after)).toEqual({
      changed: ['ca/issued.json'],
      added: ['ca.pem', 'ckks-public.params', 'ckks-secret.key', 'kit.json', 'site-key.pem', 'site.pem'].map((file) => `sites/hospital-c/${file}`),
      removed: [],
    });
    // The ledger only grew: earlier records are untouched.
    const ledgerAfter = await json<{ certificates: unknown[] }>(join(out, 'ca/issued.json'));
    expect(ledgerAfter.certificates.slice(0, ledgerBefore.certificates.length)).toEqual(ledgerBefore.certificates);
    expect(ledgerAfter.certificates).toHaveLength(ledgerBefore.certificates.length + 1);

    const kit = await readSiteKit(added.kitDir);
    expect(kit.manifest.ca.fingerprint256).toBe(result.caFingerprint256);
    expect(kit.manifest.ckks.fingerprint).toBe(ckks.material.fingerprint);
    expect(Buffer.from(kit.ckksSecretKey).equals(Buffer.from(ckks.material.secretKey))).toBe(true);
    expect(Math.round((added.notAfter.getTime() - Date.parse(kit.manifest.certificate.notBefore)) / 86_400_000)).toBe(30);
    expect(await mode(join(added.kitDir, 'site-key.pem'))).toBe(0o600);
    expect(await mode(join(added.kitDir, 'ckks-secret.key'))).toBe(0o600);
    // The coordinator's existing kit trusts the new site without any change.
    const coordinatorCa = await readFile(join(out, 'coordinator/ca.pem'), 'utf8');
    expect(verifyCertificate(kit.certificatePem, coordinatorCa, { purpose: 'client' })).toMatchObject({ ok: true, certificate: { siteId: 'hospital-c' } });
  });

  it('refuses a duplicate site id, a bad id and a folder without a CA', async () => {
    await provisionConsortium({ config, outDir: out, generateCkksKeys: fakeCkks().generate });
    const before = await snapshot(out);
    await expect(addSite({ outDir: out, siteId: 'hospital-a' })).rejects.toThrow(/duplicate site id "hospital-a".*renew hospital-a/s);
    await expect(addSite({ outDir: out, siteId: 'Hospital_C' })).rejects.toThrow(/invalid site id "Hospital_C": a site id is/);
    await expect(addSite({ outDir: out, siteId: 'coordinator' })).rejects.toThrow(/reserved/);
    await expect(addSite({ outDir: out, siteId: 'hospital-c', validityDays: 0 })).rejects.toThrow(/invalid validity of 0 days/);
    expect(changes(before, await snapshot(out))).toEqual({ changed: [], added: [], removed: [] });
    await expect(addSite({ outDir: join(work, 'elsewhere'), siteId: 'hospital-c' })).rejects.toThrow(/missing CA: .*elsewhere/);
  });

  it('refuses when the operator CA key is gone or the stored CKKS secret is damaged', async () => {
    await provisionConsortium({ config, outDir: out, generateCkksKeys: fakeCkks().generate });
    await rm(join(out, 'ca/ca-key.pem'));
    await expect(addSite({ outDir: out, siteId: 'hospital-c' })).rejects.toThrow(/missing .*ca-key\.pem: missing CA key/);
    const other = join(work, 'other');
    await provisionConsortium({ config, outDir: other, generateCkksKeys: fakeCkks().generate });
    await writeFile(join(other, 'ca/ckks-secret.key'), randomBytes(96));
    await expect(addSite({ outDir: other, siteId: 'hospital-c' })).rejects.toThrow(/ckks-secret\.key is damaged or replaced/);
    expect(await readdir(join(other, 'sites'))).toEqual(['hospital-a', 'hospital-b']);
  });
});

describe('renewParticipant', () => {
  it("reissues a site's key and certificate from the same CA and changes nothing else", async () => {
    const result = await provisionConsortium({ config, outDir: out, generateCkksKeys: fakeCkks().generate });
    const before = await snapshot(out);
    const oldCertificate = await readFile(join(out, 'sites/hospital-a/site.pem'), 'utf8');

    const renewed = await renewParticipant({ outDir: out, participant: 'hospital-a' });
    expect(renewed.fingerprint256).not.toBe(result.sites[0]!.fingerprint256);
    expect(changes(before, await snapshot(out))).toEqual({
      changed: ['ca/issued.json', 'sites/hospital-a/kit.json', 'sites/hospital-a/site-key.pem', 'sites/hospital-a/site.pem'],
      added: [],
      removed: [],
    });
    const kit = await readSiteKit(renewed.kitDir);
    expect(kit.manifest.certificate.fingerprint256).toBe(renewed.fingerprint256);
    expect(kit.manifest.ca.fingerprint256).toBe(result.caFingerprint256);
    expect(await mode(join(renewed.kitDir, 'site-key.pem'))).toBe(0o600);
    // Same CA: the old certificate still chains (it is not revoked by renewing).
    expect(verifyCertificate(oldCertificate, kit.caPem, { purpose: 'client' }).ok).toBe(true);
    expect((await readdir(join(out, 'sites'))).sort()).toEqual(['hospital-a', 'hospital-b']);
  });

  it('reissues the coordinator certificate, optionally for new hostnames, keeping revoked.json', async () => {
    await provisionConsortium({ config, outDir: out, generateCkksKeys: fakeCkks().generate });
    await revokeSite({ outDir: out, siteId: 'hospital-b', reason: 'left the consortium' });
    const revokedBefore = await readFile(join(out, 'coordinator/revoked.json'), 'utf8');
    const before = await snapshot(out);

    const renewed = await renewParticipant({ outDir: out, participant: 'coordinator', hostnames: ['fl.example.net'], ips: [] });
    expect(changes(before, await snapshot(out))).toEqual({
      changed: ['ca/consortium.json', 'ca/issued.json', 'coordinator/kit.json', 'coordinator/server-key.pem', 'coordinator/server.pem'],
      added: [],
      removed: [],
    });
    expect(await readFile(join(out, 'coordinator/revoked.json'), 'utf8')).toBe(revokedBefore);
    const kit = await readCoordinatorKit(renewed.kitDir);
    expect(inspectCertificate(kit.certificatePem)).toMatchObject({ dnsNames: ['fl.example.net'], ipAddresses: [] });
    expect(kit.revoked.map((entry) => entry.siteId)).toEqual(['hospital-b']);
    // The next plain renewal keeps the new names.
    const again = await renewParticipant({ outDir: out, participant: 'coordinator' });
    expect(inspectCertificate(await readFile(join(again.kitDir, 'server.pem'), 'utf8')).dnsNames).toEqual(['fl.example.net']);
  });

  it('rebuilds a kit folder that the operator already shipped and deleted', async () => {
    await provisionConsortium({ config, outDir: out, generateCkksKeys: fakeCkks().generate });
    await rm(join(out, 'sites/hospital-b'), { recursive: true });
    const renewed = await renewParticipant({ outDir: out, participant: 'hospital-b' });
    expect((await readSiteKit(renewed.kitDir)).siteId).toBe('hospital-b');
  });

  it('names the unknown participant and the known ones', async () => {
    await provisionConsortium({ config, outDir: out, generateCkksKeys: fakeCkks().generate });
    const before = await snapshot(out);
    await expect(renewParticipant({ outDir: out, participant: 'hospital-z' })).rejects.toThrow(
      /unknown site "hospital-z".*known sites: hospital-a, hospital-b.*add-site hospital-z/s,
    );
    await expect(renewParticipant({ outDir: out, participant: 'hospital-a', hostnames: ['x.example'] })).rejects.toThrow(/cannot be set when renewing a site/);
    await expect(renewParticipant({ outDir: out, participant: 'coordinator', hostnames: ['10.1.1.1'] })).rejects.toThrow(/invalid hostname "10\.1\.1\.1": is an IP address/);
    expect(changes(before, await snapshot(out))).toEqual({ changed: [], added: [], removed: [] });
  });
});

describe('revokeSite', () => {
  it("adds the site's certificate to the coordinator's revoked.json and changes nothing else", async () => {
    const result = await provisionConsortium({ config, outDir: out, generateCkksKeys: fakeCkks().generate });
    const before = await snapshot(out);
    const revoked = await revokeSite({ outDir: out, siteId: 'hospital-a', reason: 'key lost' });
    expect(revoked.revoked).toHaveLength(1);
    expect(changes(before, await snapshot(out))).toEqual({ changed: ['ca/issued.json', 'coordinator/revoked.json'], added: [], removed: [] });

    const kit = await readCoordinatorKit(join(out, 'coordinator'));
    const site = result.sites.find((entry) => entry.participant === 'hospital-a')!;
    expect(kit.revoked).toEqual([
      { siteId: 'hospital-a', serialNumber: site.serialNumber, fingerprint256: site.fingerprint256, revokedAt: expect.any(String), reason: 'key lost' },
    ]);
    expect(findRevocation(kit.revoked, { fingerprint256: site.fingerprint256 })?.siteId).toBe('hospital-a');
    expect(findRevocation(kit.revoked, { fingerprint256: result.sites[1]!.fingerprint256 })).toBeUndefined();
  });

  it('revokes every certificate the site ever had, once', async () => {
    const result = await provisionConsortium({ config, outDir: out, generateCkksKeys: fakeCkks().generate });
    const renewed = await renewParticipant({ outDir: out, participant: 'hospital-b' });
    const first = await revokeSite({ outDir: out, siteId: 'hospital-b' });
    expect(first.revoked.map((record) => record.fingerprint256)).toEqual([result.sites[1]!.fingerprint256, renewed.fingerprint256]);
    const before = await snapshot(out);
    const second = await revokeSite({ outDir: out, siteId: 'hospital-b' });
    expect(second).toMatchObject({ revoked: [], alreadyRevoked: 2 });
    expect(changes(before, await snapshot(out))).toEqual({ changed: [], added: [], removed: [] });
    // Re-admitting after a compromise: renew issues a fresh certificate that is not on the list.
    const readmitted = await renewParticipant({ outDir: out, participant: 'hospital-b' });
    const kit = await readCoordinatorKit(join(out, 'coordinator'));
    expect(findRevocation(kit.revoked, readmitted)).toBeUndefined();
    expect(kit.revoked).toHaveLength(2);
  });

  it('refuses an unknown site and a folder without a CA', async () => {
    await provisionConsortium({ config, outDir: out, generateCkksKeys: fakeCkks().generate });
    await expect(revokeSite({ outDir: out, siteId: 'hospital-z' })).rejects.toThrow(/unknown site "hospital-z".*known sites: hospital-a, hospital-b/);
    await expect(revokeSite({ outDir: join(work, 'none'), siteId: 'hospital-a' })).rejects.toThrow(/missing CA/);
  });
});

describe('kit readers on provisioned kits', () => {
  it('refuse a coordinator kit that holds the CKKS secret key, and a site kit whose files were swapped', async () => {
    await provisionConsortium({ config, outDir: out, generateCkksKeys: fakeCkks().generate });
    await copyFile(join(out, 'ca/ckks-secret.key'), join(out, 'coordinator/ckks-secret.key'));
    await expect(readCoordinatorKit(join(out, 'coordinator'))).rejects.toThrow(/must never hold the CKKS secret key/);

    await copyFile(join(out, 'sites/hospital-b/site.pem'), join(out, 'sites/hospital-a/site.pem'));
    await expect(readSiteKit(join(out, 'sites/hospital-a'))).rejects.toThrow(/site\.pem does not match kit\.json/);

    const manifest = await json<SiteKitManifest>(join(out, 'sites/hospital-b/kit.json'));
    await writeFile(join(out, 'sites/hospital-b/kit.json'), JSON.stringify({ ...manifest, siteId: 'Not Valid' }));
    await expect(readSiteKit(join(out, 'sites/hospital-b'))).rejects.toThrow(/kit\.json is invalid: siteId/);
    const coordinatorManifest = await json<CoordinatorKitManifest>(join(out, 'coordinator/kit.json'));
    expect(coordinatorManifest).not.toHaveProperty('ckks.secretKeySha256');
  });

  it('warn about a private key other users can read', async () => {
    const result = await provisionConsortium({ config, outDir: out, generateCkksKeys: fakeCkks().generate });
    const kitDir = result.sites[0]!.kitDir;
    await chmod(join(kitDir, 'site-key.pem'), 0o644);
    expect((await readSiteKit(kitDir)).warnings).toEqual([`${join(kitDir, 'site-key.pem')} is readable by other users (mode 0644); run chmod 600 on it`]);
  });
});
