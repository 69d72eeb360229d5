// Lint what type-checking cannot catch. Promises that nobody awaits or catches turn failures into unhandled
// rejections (a crash, or a silent stall); every one must be awaited, returned, or handled with `void` and a catch.
import tseslint from 'typescript-eslint';

export default tseslint.config(
  { ignores: ['**/dist/**', '**/generated/**', '**/node_modules/**', '**/*.test.ts', '**/*.testkit.ts'] },
  {
    files: ['shared/src/**/*.ts', 'coordinator/src/**/*.ts', 'site-agent/src/**/*.ts', 'demo/src/**/*.ts', 'coordinator/web/src/**/*.ts'],
    languageOptions: {
      parser: tseslint.parser,
      parserOptions: { projectService: true, tsconfigRootDir: import.meta.dirname },
    },
    plugins: { '@typescript-eslint': tseslint.plugin },
    rules: {
      // `void` alone does not count as handling: a voided promise needs its catch too.
      '@typescript-eslint/no-floating-promises': ['error', { ignoreVoid: false }],
      '@typescript-eslint/no-misused-promises': ['error', { checksVoidReturn: { arguments: false } }],
    },
  },
);
