import { configDefaults, defineConfig } from 'vitest/config';

/** Unit tests that replace modules (vi.mock): they need a fresh module graph, as the integration tests do. */
const REPLACES_MODULES = ['site-agent/src/train/backend-native.test.ts', 'site-agent/src/data/dataset/load-cache.test.ts'];

export default defineConfig({
  test: {
    testTimeout: 120_000,
    hookTimeout: 120_000,
    pool: 'forks',
    // Tests exercise refusals on purpose; their warnings would bury the report. FEDERA_LOG_LEVEL=info to see them.
    env: { FEDERA_LOG_LEVEL: process.env.FEDERA_LOG_LEVEL ?? 'error' },
    projects: [
      {
        extends: true,
        test: {
          name: 'unit',
          include: ['shared/src/**/*.test.ts', 'coordinator/src/**/*.test.ts', 'site-agent/src/**/*.test.ts'],
          exclude: [...configDefaults.exclude, ...REPLACES_MODULES],
          // One module graph per worker instead of one per file: loading TensorFlow.js, Prisma and the proto code
          // again for each of some 140 small files took longer than most of their tests.
          isolate: false,
        },
      },
      {
        extends: true,
        test: {
          name: 'integration',
          // Each file starts its own coordinators and site processes and sets its own environment: kept apart.
          include: ['test/**/*.test.ts', ...REPLACES_MODULES],
        },
      },
    ],
  },
});
