import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { createServer, type Server } from 'node:http';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { parseSiteConfig, SiteConfigError } from '../../config/index.js';
import { DicomWebClient, DicomWebError } from './client.js';
import { authorizationHeader } from './credentials.js';
import { contentTypeParameter, parseMultipart } from './multipart.js';
import { dicomWebSourceSchema } from './schema.js';
import { syncPacsSelection } from './sync.js';

const multipart = (boundary: string, parts: Array<{ body: Uint8Array; length?: boolean }>, preamble = ''): Buffer =>
  Buffer.concat([
    Buffer.from(preamble),
    ...parts.flatMap((p, i) => [
      Buffer.from(`${i === 0 && !preamble ? '' : '\r\n'}--${boundary}\r\nContent-Type: application/dicom\r\n${p.length === false ? '' : `Content-Length: ${p.body.length}\r\n`}\r\n`),
      Buffer.from(p.body),
    ]),
    Buffer.from(`\r\n--${boundary}--\r\n`),
  ]);

describe('multipart/related parsing', () => {
  it('reads quoted and bare boundaries', () => {
    expect(contentTypeParameter('multipart/related; type="application/dicom"; boundary="a;b c"', 'boundary')).toBe('a;b c');
    expect(contentTypeParameter('multipart/related; Boundary=xyz; type=application/dicom', 'boundary')).toBe('xyz');
  });

  it('keeps binary bodies intact, even when they contain the boundary text', () => {
    const boundary = 'BOUNDARY';
    const tricky = Buffer.concat([Buffer.from([0, 255, 13, 10]), Buffer.from('\r\n--BOUNDARY\r\n'), Buffer.from([1, 2, 3])]);
    const parts = parseMultipart(multipart(boundary, [{ body: tricky }]), `multipart/related; boundary=${boundary}`);
    expect(parts).toHaveLength(1);
    expect(Buffer.from(parts[0]?.body ?? []).equals(tricky)).toBe(true);
  });

  it('splits several parts without Content-Length, after a preamble', () => {
    const body = multipart('b1', [{ body: Buffer.from('first'), length: false }, { body: Buffer.from('second'), length: false }], 'preamble text\r\n');
    const parts = parseMultipart(body, 'multipart/related; boundary="b1"');
    expect(parts.map((p) => Buffer.from(p.body).toString())).toEqual(['first', 'second']);
    expect(parts[0]?.headers['content-type']).toBe('application/dicom');
  });

  it('refuses a truncated answer', () => {
    const body = multipart('b1', [{ body: Buffer.from('data'), length: false }]);
    expect(() => parseMultipart(body.subarray(0, body.length - 12), 'multipart/related; boundary=b1')).toThrow(/truncated/);
  });
});

describe('DICOMweb client', () => {
  let server: Server | undefined;
  afterEach(() => new Promise<void>((done) => (server ? server.close(() => done()) : done())));

  const serve = async (handler: Parameters<typeof createServer>[1]): Promise<string> => {
    server = createServer(handler);
    await new Promise<void>((r) => server?.listen(0, '127.0.0.1', r));
    const address = server.address();
    return `http://127.0.0.1:${typeof address === 'object' && address ? address.port : 0}/dicom-web`;
  };

  it('gives up after its retries on 5xx and names the URL', async () => {
    let hits = 0;
    const url = await serve((_req, res) => {
      hits++;
      res.writeHead(502).end();
    });
    const client = new DicomWebClient({ url, retries: 2, backoffMs: 1 });
    await expect(client.searchInstances({ modality: 'CT' })).rejects.toThrow(/PACS at http:\/\/127\.0\.0\.1:\d+\/dicom-web\/instances\?Modality=CT.* HTTP 502/);
    expect(hits).toBe(3);
  });

  it('times out a request that never answers', async () => {
    const url = await serve(() => undefined);
    const client = new DicomWebClient({ url, retries: 0, timeoutMs: 100 });
    await expect(client.ping()).rejects.toThrow(/did not answer .* within 0.1 s/);
    server?.closeAllConnections();
  });

  it('says where it could not connect', async () => {
    // A port that was free a moment ago: nothing listens there.
    const url = await serve(() => undefined);
    await new Promise<void>((r) => server?.close(() => r()));
    server = undefined;
    const error = await new DicomWebClient({ url, retries: 0 }).ping().catch((e: unknown) => e);
    expect(error).toBeInstanceOf(DicomWebError);
    expect((error as Error).message).toMatch(/cannot reach the PACS at http:\/\/127\.0\.0\.1:\d+\/dicom-web\/studies\?limit=1 \(ECONNREFUSED\): check data\.source\.url/);
  });

  it('validates QIDO-RS JSON', async () => {
    const url = await serve((_req, res) => res.writeHead(200, { 'content-type': 'application/dicom+json' }).end(JSON.stringify([{ '00080018': { vr: 'UI', Value: ['not a uid'] } }])));
    await expect(new DicomWebClient({ url, retries: 0 }).searchInstances({ modality: 'CT' })).rejects.toThrow(/studyInstanceUid \(0020000D\) is missing or not a UID/);
  });
});

describe('dicomweb source in the site config', () => {
  const base = { site: { id: 'hospital-a' }, coordinator: { address: 'c:1', insecure: true }, stateDir: 'state' };

  it('caches in the state folder and resolves the secret file next to the config', () => {
    const config = parseSiteConfig(
      { ...base, data: { source: { kind: 'dicomweb', url: 'https://pacs.example.org/dicom-web', auth: { bearerFile: 'token' }, query: { modality: 'CT' } }, labels: 'l.csv' } },
      '/etc/federa',
    );
    expect(config.data.dir).toBe('/etc/federa/state/pacs-cache');
    expect(config.data.source).toMatchObject({ auth: { bearerFile: '/etc/federa/token' }, retries: 4, timeoutSeconds: 120 });
  });

  it('refuses inline credentials, an empty query and a data.dir beside a PACS', () => {
    const bad = (source: Record<string, unknown>, extra: Record<string, unknown> = {}): string => {
      try {
        parseSiteConfig({ ...base, data: { source: { kind: 'dicomweb', url: 'https://pacs/dicom-web', query: { modality: 'CT' }, ...source }, ...extra } }, '/');
      } catch (error) {
        if (error instanceof SiteConfigError) return error.message;
      }
      return 'accepted';
    };
    expect(bad({ url: 'https://u:p@pacs/dicom-web' })).toMatch(/must not carry credentials/);
    expect(bad({ query: {} })).toMatch(/needs at least one filter/);
    expect(bad({ auth: { basic: { username: 'u', password: 'inline' } } })).toMatch(/auth/);
    expect(bad({}, { dir: 'images' })).toMatch(/cannot be combined with source kind dicomweb/);
    expect(parseSiteConfig({ ...base, data: { dir: 'images' } }, '/').data.source).toBeUndefined();
  });

  it('selects by the labels CSV only with labels, and not beside a UID list', () => {
    const message = (data: Record<string, unknown>): string => {
      try {
        parseSiteConfig({ ...base, data }, '/');
      } catch (error) {
        if (error instanceof SiteConfigError) return error.message;
      }
      return 'accepted';
    };
    const source = (query: Record<string, unknown>): Record<string, unknown> => ({ kind: 'dicomweb', url: 'https://pacs/dicom-web', query });
    expect(message({ source: source({ fromLabels: true }), labels: 'l.csv' })).toBe('accepted');
    expect(message({ source: source({ fromLabels: true, modality: 'CT' }), labels: 'l.csv' })).toBe('accepted');
    expect(message({ source: source({ fromLabels: true }) })).toMatch(/data\.labels: is required with source\.query\.fromLabels/);
    expect(message({ source: source({ fromLabels: true, seriesInstanceUids: ['1.2.3'] }), labels: 'l.csv' })).toMatch(/fromLabels selects the UIDs of the labels CSV: drop studyInstanceUids and seriesInstanceUids/);
    expect(message({ source: source({ fromLabels: false }), labels: 'l.csv' })).toMatch(/needs at least one filter .* or fromLabels: true/);
  });

  it('refuses a file-keyed or unreadable labels CSV as the selection before asking the PACS', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'federa-pacs-labels-'));
    try {
      const csv = join(dir, 'labels.csv');
      await writeFile(csv, 'file,label\na.dcm,normal\n');
      const source = dicomWebSourceSchema.parse({ kind: 'dicomweb', url: 'http://127.0.0.1:9/dicom-web', query: { fromLabels: true } });
      let requests = 0;
      const fetch: typeof globalThis.fetch = () => {
        requests++;
        return Promise.reject(new Error('no PACS here'));
      };
      const sync = (labelsCsv: string): Promise<unknown> => syncPacsSelection({ source, cacheDir: join(dir, 'cache'), labelsCsv, client: { fetch } });
      await expect(sync(csv)).rejects.toThrow(/labels\.csv is keyed by file, which cannot select PACS images/);
      await expect(sync(join(dir, 'missing.csv'))).rejects.toThrow(/cannot read the labels CSV .*missing\.csv .*ENOENT/);
      await expect(sync(join(dir, 'missing.csv'))).rejects.toBeInstanceOf(SiteConfigError);
      expect(requests).toBe(0);
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  });

  it('reads secrets from a variable without showing them', async () => {
    expect(await authorizationHeader({ bearerEnv: 'PACS_TOKEN' }, { PACS_TOKEN: 'abc\n' })).toBe('Bearer abc');
    await expect(authorizationHeader({ basic: { username: 'u', passwordEnv: 'NOPE' } }, {})).rejects.toThrow(/\$NOPE is not set/);
  });
});
