import { describe, expect, it } from 'vitest';
import { UsageError } from './governance.js';
import { privacyCommand } from './privacy.js';

describe('federa-site privacy', () => {
  it('refuses to run without a site.yaml, or with a flag it does not know', async () => {
    const out: string[] = [];
    await expect(privacyCommand([], (t) => void out.push(t))).rejects.toThrow(UsageError);
    await expect(privacyCommand([], (t) => void out.push(t))).rejects.toThrow('privacy needs --config <site.yaml>');
    await expect(privacyCommand(['--config', 'site.yaml', '--budget', '3'], (t) => void out.push(t))).rejects.toThrow(/Unknown option '--budget'/);
    await expect(privacyCommand(['--config', '/nonexistent/site.yaml'], (t) => void out.push(t))).rejects.toThrow(/site\.yaml/);
    expect(out).toEqual([]);
  });
});
