import { tmpdir } from 'node:os';
import { describe, expect, it } from 'vitest';
import { checkDiskSpace, DISK_FAIL_BYTES, DISK_WARN_BYTES, judgeFreeSpace } from './state.js';
import { certificateNames, describeNames, splitAddress } from './tls-probe.js';

const GIB = 1024 ** 3;

describe('doctor: disk space in the state folder', () => {
  it('fails under 1 GiB, warns under 5 GiB, passes above', () => {
    expect(DISK_FAIL_BYTES).toBe(GIB);
    expect(DISK_WARN_BYTES).toBe(5 * GIB);
    expect(judgeFreeSpace('/var/lib/federa-site', 300 * 1024 ** 2)).toMatchObject({
      ok: false,
      detail: '300 MiB free in /var/lib/federa-site',
      hint: expect.stringMatching(/^free at least 5\.0 GiB there/),
    });
    expect(judgeFreeSpace('/s', 2.5 * GIB)).toMatchObject({ ok: true, warning: true, detail: '2.5 GiB free in /s', hint: expect.stringMatching(/less than 5\.0 GiB/) });
    expect(judgeFreeSpace('/s', 20 * GIB)).toEqual({ name: 'disk space', ok: true, detail: '20.0 GiB free in /s' });
  });

  it('reads the free space of a real folder, and fails one that does not exist', async () => {
    expect(await checkDiskSpace(tmpdir())).toMatchObject({ name: 'disk space', detail: expect.stringMatching(/ free in /) });
    expect(await checkDiskSpace('/nonexistent/federa-state')).toMatchObject({ ok: false, detail: expect.stringMatching(/^cannot read free space/) });
  });
});

describe('doctor: coordinator certificate names', () => {
  it('reads DNS names and IPs from a peer certificate\'s subjectAltName', () => {
    const names = certificateNames({ subjectaltname: 'DNS:coordinator.example.org, DNS:localhost, IP Address:10.0.0.5' });
    expect(names).toEqual({ dns: ['coordinator.example.org', 'localhost'], ips: ['10.0.0.5'] });
    expect(describeNames(names)).toBe('DNS coordinator.example.org, DNS localhost, IP 10.0.0.5');
    expect(describeNames(certificateNames({}))).toBe('no names');
    expect(splitAddress('10.0.0.5:50051')).toEqual({ host: '10.0.0.5', port: 50051 });
  });
});
