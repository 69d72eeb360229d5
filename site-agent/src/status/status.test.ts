import { afterEach, describe, expect, it } from 'vitest';
import { parseSiteConfig } from '../config/index.js';
import { AgentStatus } from './agent-status.js';
import { statusConfigSchema } from './schema.js';
import { startStatusServer, type StatusServer } from './status-server.js';

function sample(text: string, series: string): number | undefined {
  const line = text.split('\n').find((l) => l.startsWith(`${series} `));
  return line === undefined ? undefined : Number(line.slice(series.length + 1));
}

describe('site status endpoint', () => {
  let server: StatusServer | undefined;
  afterEach(async () => {
    await server?.close();
    server = undefined;
  });

  it('serves /health from the status source and /metrics in Prometheus format', async () => {
    const status = new AgentStatus('hospital-a');
    server = await startStatusServer({ host: '127.0.0.1', port: 0 }, status);
    const base = `http://127.0.0.1:${server.port}`;

    expect(await (await fetch(`${base}/health`)).json()).toEqual({ status: 'ok', siteId: 'hospital-a', connected: false, lastHeartbeatAt: null, current: null });
    status.connected(true);
    status.heartbeat(Date.parse('2026-01-02T03:04:05Z'));
    status.taskStarted({ studyId: 'study-1', round: 2, task: 'train' });
    const health = await fetch(`${base}/health`);
    expect(health.status).toBe(200);
    expect(health.headers.get('content-type')).toMatch(/^application\/json/);
    expect(await health.json()).toEqual({
      status: 'ok',
      siteId: 'hospital-a',
      connected: true,
      lastHeartbeatAt: '2026-01-02T03:04:05.000Z',
      current: { studyId: 'study-1', round: 2, task: 'train' },
    });

    status.trained(12.5);
    status.updateSent(4096);
    status.refused('REFUSAL_REASON_NOT_APPROVED');
    status.refused('REFUSAL_REASON_NOT_APPROVED');
    status.taskEnded();
    const metrics = await fetch(`${base}/metrics`);
    expect(metrics.status).toBe(200);
    expect(metrics.headers.get('content-type')).toMatch(/^text\/plain; version=0\.0\.4/);
    const text = await metrics.text();
    expect(sample(text, 'federa_site_connected')).toBe(1);
    expect(sample(text, 'federa_site_rounds_trained_total')).toBe(1);
    expect(sample(text, 'federa_site_updates_sent_total')).toBe(1);
    expect(sample(text, 'federa_site_update_bytes_sent_total')).toBe(4096);
    expect(sample(text, 'federa_site_refusals_total{reason="not_approved"}')).toBe(2);
    expect(sample(text, 'federa_site_training_seconds_sum')).toBe(12.5);
    expect(sample(text, 'federa_site_training_seconds_count')).toBe(1);
    expect(text).toContain('process_cpu_user_seconds_total');
    expect(((await (await fetch(`${base}/health`)).json()) as { current: unknown }).current).toBeNull();

    expect((await fetch(`${base}/other`)).status).toBe(404);
    expect((await fetch(`${base}/health`, { method: 'POST' })).status).toBe(405);
  });

  it('answers 500 (and keeps serving) when the source fails', async () => {
    const status = new AgentStatus('hospital-b');
    server = await startStatusServer(
      { host: '127.0.0.1', port: 0 },
      { view: () => status.view(), metrics: () => Promise.reject(new Error('broken collector')) },
    );
    expect((await fetch(`http://127.0.0.1:${server.port}/metrics`)).status).toBe(500);
    expect((await fetch(`http://127.0.0.1:${server.port}/health`)).status).toBe(200);
  });

  it('keeps two agents\' metrics apart (a registry each)', async () => {
    const a = new AgentStatus('a');
    const b = new AgentStatus('b');
    a.updateSent(10);
    expect(sample((await b.metrics()).body, 'federa_site_updates_sent_total')).toBe(0);
    expect(sample((await a.metrics()).body, 'federa_site_updates_sent_total')).toBe(1);
  });

  it('binds to loopback unless allowRemote is set', () => {
    expect(statusConfigSchema.parse({ port: 9464 })).toEqual({ port: 9464, host: '127.0.0.1', allowRemote: false });
    expect(statusConfigSchema.safeParse({ port: 9464, host: '::1' }).success).toBe(true);
    expect(statusConfigSchema.safeParse({ port: 9464, host: 'localhost' }).success).toBe(true);
    const remote = statusConfigSchema.safeParse({ port: 9464, host: '0.0.0.0' });
    expect(remote.success).toBe(false);
    expect(remote.error?.issues[0]?.message).toMatch(/not a loopback address.*allowRemote: true/);
    expect(statusConfigSchema.safeParse({ port: 9464, host: '0.0.0.0', allowRemote: true }).success).toBe(true);
    expect(statusConfigSchema.safeParse({ port: 0 }).success).toBe(false);
    expect(statusConfigSchema.safeParse({ port: 9464, extra: 1 }).success).toBe(false);
  });

  it('is an optional block of site.yaml', () => {
    const base = { site: { id: 'hospital-a' }, coordinator: { address: 'localhost:50051', insecure: true }, data: { dir: 'data' }, stateDir: 'state' };
    expect(parseSiteConfig(base, '/tmp').status).toBeUndefined();
    expect(parseSiteConfig({ ...base, status: { port: 9464 } }, '/tmp').status).toEqual({ port: 9464, host: '127.0.0.1', allowRemote: false });
    expect(() => parseSiteConfig({ ...base, status: { port: 9464, host: '10.0.0.5' } }, '/tmp')).toThrow(/status\.host.*loopback/);
  });
});
