import { mkdir, mkdtemp, readFile, rm, stat, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { RoundStateStore, type RoundState } from './round-state.js';

const state: RoundState = {
  studyId: 'study-1',
  round: 3,
  status: 'trained',
  baseModelSha256: 'a'.repeat(64),
  updateSha256: 'b'.repeat(64),
  vectorLength: 4,
  encoding: 1,
  samples: 12,
  trainLoss: 0.4,
  trainAccuracy: 0.8,
  validationLoss: null,
  validationAccuracy: null,
  validationSamples: 0,
  backend: 'wasm',
  trainSeconds: 1.5,
};

describe('round state on disk', () => {
  let dir: string;
  beforeEach(async () => {
    dir = await mkdtemp(join(tmpdir(), 'federa-state-'));
  });
  afterEach(() => rm(dir, { recursive: true, force: true }));

  it('keeps the exact update bytes and moves from trained to uploaded', async () => {
    const store = new RoundStateStore(dir);
    expect(await store.read('study-1', 3)).toBeUndefined();
    const bytes = Uint8Array.from([1, 2, 3, 4]);
    await store.saveTrained(state, bytes);
    expect(await store.read('study-1', 3)).toEqual(state);
    expect(Array.from(await store.readUpdate('study-1', 3))).toEqual([1, 2, 3, 4]);
    // Only the site can read what it is about to send.
    expect((await stat(store.updatePath('study-1', 3))).mode & 0o777).toBe(0o600);
    expect((await stat(join(dir, 'rounds', 'study-1', '3'))).mode & 0o777).toBe(0o700);
    // A study id that would lead outside the state folder is refused before any path is built.
    await expect(store.saveTrained({ ...state, studyId: '../escape' }, bytes)).rejects.toThrow(/not a study id/);

    const receipt = { sha256: 'b'.repeat(64), receivedBytes: 4, receivedAtUnixMs: 1 };
    await store.markUploaded(state, receipt);
    // A fresh store (a restarted agent) sees the round as done, so it is never trained again.
    const reread = await new RoundStateStore(dir).read('study-1', 3);
    expect(reread?.status).toBe('uploaded');
    expect(reread?.receipt).toEqual(receipt);
  });

  it('reports a corrupt state file instead of guessing', async () => {
    const store = new RoundStateStore(dir);
    await store.saveTrained(state, new Uint8Array(4));
    const file = join(dir, 'rounds', 'study-1', '3', 'state.json');
    const json = JSON.parse(await readFile(file, 'utf8')) as Record<string, unknown>;
    await writeFile(file, JSON.stringify({ ...json, status: 'maybe' }));
    await expect(store.read('study-1', 3)).rejects.toThrow(/round state .*state\.json is corrupt: .*move it aside/);
    // Unreadable is not "never trained" either: that would retrain and overwrite an uploaded round.
    await writeFile(file, '{"studyId": "study-1", "rou');
    await expect(store.read('study-1', 3)).rejects.toThrow(/is corrupt \(not JSON\)/);
    await rm(file);
    await mkdir(file);
    await expect(store.read('study-1', 3)).rejects.toThrow(/cannot read the round state/);
  });
});
