import { defineConfig } from 'vitest/config';

export default defineConfig({
  test: {
    include: ['shared/src/**/*.test.ts', 'coordinator/src/**/*.test.ts', 'site-agent/src/**/*.test.ts', 'test/**/*.test.ts'],
    testTimeout: 120_000,
    hookTimeout: 120_000,
    pool: 'forks',
    // Tests exercise refusals on purpose; their warnings would bury the report. FEDERA_LOG_LEVEL=info to see them.
    env: { FEDERA_LOG_LEVEL: process.env.FEDERA_LOG_LEVEL ?? 'error' },
  },
});
