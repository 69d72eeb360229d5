import { defineConfig } from 'vitest/config';

/** `npm run chaos`: the fault-injection suite (real processes killed at failpoints). Not part of `npm test`. */
export default defineConfig({
  test: {
    include: ['chaos/**/*.chaos.ts'],
    testTimeout: 300_000,
    hookTimeout: 120_000,
    pool: 'forks',
    // One consortium at a time: the suite measures recovery, not a machine shared by several of them.
    fileParallelism: false,
    env: { FEDERA_LOG_LEVEL: process.env.FEDERA_LOG_LEVEL ?? 'error' },
  },
});
