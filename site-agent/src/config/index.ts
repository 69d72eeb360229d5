import { readFile } from 'node:fs/promises';
import { dirname, resolve } from 'node:path';
import { parse as parseYaml } from 'yaml';
import { z } from 'zod';
import { describeIssues, siteIdSchema } from '@federa/shared';

const backendSchema = z.enum(['auto', 'tensorflow-gpu', 'tensorflow', 'wasm', 'cpu']);

export const siteConfigSchema = z
  .object({
    site: z.object({ id: siteIdSchema }).strict(),
    coordinator: z
      .object({
        /** host:port of the coordinator's gRPC federation service. */
        address: z.string().regex(/^[^\s:]+:\d{1,5}$/, 'must be host:port, e.g. coordinator.example.org:50051'),
        /**
         * Plaintext gRPC, development only. Mutual TLS comes with provisioning kits; until a kit is configured
         * this must be set explicitly so nobody runs without TLS by accident.
         */
        insecure: z.literal(true, {
          error: 'must be true for now: mutual TLS needs a site kit from `federa provision`; set insecure: true only for local development',
        }),
      })
      .strict(),
    data: z
      .object({
        /** Folder tree of DICOM files. */
        dir: z.string().min(1),
        /** CSV with header `file,label`; file paths relative to `dir`. */
        labels: z.string().min(1),
        /** Share of the site's images held out for validation, never trained on. */
        validationFraction: z.number().min(0).max(0.9).default(0.2),
      })
      .strict(),
    training: z
      .object({ backend: backendSchema.default('auto') })
      .strict()
      .default({ backend: 'auto' }),
    /** Where the agent keeps round state and copies of everything it sent. */
    stateDir: z.string().min(1),
  })
  .strict();

export type SiteConfig = z.output<typeof siteConfigSchema>;
export type BackendPreference = z.output<typeof backendSchema>;

export class SiteConfigError extends Error {
  override readonly name = 'SiteConfigError';
}

/** Validates a parsed config; relative paths are taken relative to `baseDir` (the config file's folder). */
export function parseSiteConfig(input: unknown, baseDir: string, source = 'site config'): SiteConfig {
  const parsed = siteConfigSchema.safeParse(input);
  if (!parsed.success) {
    throw new SiteConfigError(`${source} is invalid:\n  ${describeIssues(parsed.error).join('\n  ')}`);
  }
  const config = parsed.data;
  return {
    ...config,
    data: { ...config.data, dir: resolve(baseDir, config.data.dir), labels: resolve(baseDir, config.data.labels) },
    stateDir: resolve(baseDir, config.stateDir),
  };
}

export async function loadSiteConfig(path: string): Promise<SiteConfig> {
  let text: string;
  try {
    text = await readFile(path, 'utf8');
  } catch (error) {
    throw new SiteConfigError(`cannot read site config ${path}: ${(error as Error).message}`);
  }
  let raw: unknown;
  try {
    raw = parseYaml(text);
  } catch (error) {
    throw new SiteConfigError(`site config ${path} is not valid YAML: ${(error as Error).message}`);
  }
  return parseSiteConfig(raw, dirname(resolve(path)), path);
}
