import { readFile } from 'node:fs/promises';
import { dirname, resolve } from 'node:path';
import { parse as parseYaml } from 'yaml';
import { z } from 'zod';
import { describeIssues, siteIdSchema } from '@federa/shared';
import { dataSourceSchema, pacsCacheDir, resolveSourcePaths, type DataSource } from '../data/pacs/schema.js';
import { statusConfigSchema } from '../status/schema.js';

const backendSchema = z.enum(['auto', 'tensorflow-gpu', 'webgpu', 'tensorflow', 'wasm', 'cpu']);

/**
 * The hospital's rules for what this site computes and what leaves it. The defaults are the safe ones: encrypted
 * studies only, at least three sites in every aggregate, figures but no counts leave, every study approved by hand.
 */
export const sitePolicySchema = z
  .object({
    /** Refuse studies that aggregate in the clear (the coordinator would see this site's update). */
    requireEncryption: z.boolean().default(true),
    /**
     * Refuse to contribute to a round, or to use a published aggregate, made of fewer sites than this: the sum of one
     * site's update is that site's update. At least 2 (1 would allow exactly that).
     */
    minParticipants: z.int().min(2, 'must be at least 2: an aggregate of one site is that site\'s update').max(10_000).default(3),
    /** Refuse studies with more rounds than this (each round releases an aggregate and metrics). */
    maxRounds: z.int().min(1).max(100_000).default(100),
    /**
     * What leaves besides the encrypted update. none: nothing (no metrics, evaluation or dataset summary).
     * aggregate: loss, accuracy and evaluation figures, no image or class counts. full: also sample counts, the
     * dataset summary (counts by class, modality, ...) and evaluation counts (confusion matrix, coarsened score
     * histograms).
     */
    shareMetrics: z.enum(['none', 'aggregate', 'full'], { error: 'must be none, aggregate or full' }).default('aggregate'),
    /** Under shareMetrics full: every non-empty score-histogram bin holds at least this many images. */
    minCountPerBin: z.int().min(1).max(1_000).default(5),
    /**
     * A statistics round (federated statistics, only the consortium's totals are decrypted): the fewest images a
     * statistic of this site's data may be computed on; a study asking for one of fewer is refused (reason
     * statistics-too-few).
     */
    minStatisticsCount: z.int().min(1).max(100_000).default(10),
    /**
     * Multiparty: before helping decrypt a sum, download the c1 part of every update it lists (DownloadUpdateC1),
     * check each against the c1Sha256 its site signed, and check the c1 sent is their sum. Costs a download the size
     * of the summed c1 (about 13 bytes per parameter) per listed site and round; false trusts the coordinator to send
     * the real sum, which lets a dishonest coordinator have one site's update decrypted for a colluding member.
     */
    verifySum: z.boolean().default(true),
    /**
     * The most differential privacy any one study may spend on this site's data, (epsilon, delta) by the RDP
     * accountant. Before training a round the site adds what the round would spend to what the study's earlier rounds
     * spent (from its ledger) and refuses the round (reason privacy-budget) past it; with a budget set, studies
     * without differential privacy are refused too. Unset: no cap (spend is still accounted and ledgered).
     */
    privacyBudget: z
      .object({
        epsilon: z.number().positive().max(1_000),
        delta: z.number().gt(0).max(0.01),
      })
      .strict()
      .optional(),
    /** Train any study without asking. For the demo and local tests only: says so loudly in the log. */
    autoApprove: z.boolean().default(false),
  })
  .strict();

export type SitePolicy = z.output<typeof sitePolicySchema>;

export const siteConfigSchema = z
  .object({
    site: z.object({ id: siteIdSchema }).strict(),
    coordinator: z
      .object({
        /** host:port of the coordinator's gRPC federation service. */
        address: z.string().regex(/^[^\s:]+:\d{1,5}$/, 'must be host:port, e.g. coordinator.example.org:50051'),
        /** This site's kit from `federa provision`: CA, site certificate and key, CKKS secret key. */
        kit: z.string().min(1).optional(),
        /**
         * The name the coordinator's certificate must carry when it differs from the address's host (e.g. the
         * address is an IP and the certificate names a DNS host).
         */
        serverName: z.string().min(1).optional(),
        /** Plaintext gRPC with a self-declared site name: local development only, never with a kit. */
        insecure: z.boolean().default(false),
      })
      .strict()
      .superRefine((coordinator, ctx) => {
        if (!coordinator.kit && !coordinator.insecure) {
          ctx.addIssue({
            code: 'custom',
            path: ['kit'],
            message: 'is required: mutual TLS needs this site\'s kit from `federa provision` (insecure: true only for local development)',
          });
        }
        if (coordinator.kit && coordinator.insecure) {
          ctx.addIssue({ code: 'custom', path: ['insecure'], message: 'cannot be combined with a kit: choose mutual TLS or insecure' });
        }
      }),
    data: z
      .object({
        /** Folder tree of DICOM, PNG and JPEG files. Not given with a dicomweb source: its cache (in stateDir) is the folder. */
        dir: z.string().min(1).optional(),
        /**
         * Where the images come from: 'folder' (data.dir, the default) or 'dicomweb' (the hospital's PACS, copied
         * into stateDir/pacs-cache by SOP Instance UID; labels then by sop_instance_uid, series_instance_uid or
         * study_instance_uid).
         */
        source: dataSourceSchema.optional(),
        /**
         * 'csv': a labels CSV (`labels`) keyed by `file` (path relative to `dir`), `sop_instance_uid`,
         * `series_instance_uid` or `study_instance_uid`. 'folders': the first folder under `dir` is the class. Defaults to 'csv' when
         * `labels` is given and to 'folders' when it is not.
         */
        layout: z.enum(['csv', 'folders'], { error: 'must be "csv" or "folders"' }).optional(),
        labels: z.string().min(1).optional(),
        /** Share of the site's images held out for validation, never trained on. */
        validationFraction: z.number().min(0).max(0.9).default(0.2),
      })
      .strict()
      .superRefine((data, ctx) => {
        const pacs = data.source?.kind === 'dicomweb';
        if (!pacs && data.dir === undefined) ctx.addIssue({ code: 'custom', path: ['dir'], message: 'is required: the folder holding the DICOM, PNG or JPEG files' });
        if (pacs && data.dir !== undefined) {
          ctx.addIssue({ code: 'custom', path: ['dir'], message: 'cannot be combined with source kind dicomweb: the PACS images are cached under stateDir/pacs-cache' });
        }
        if (data.layout === 'csv' && data.labels === undefined) {
          ctx.addIssue({ code: 'custom', path: ['labels'], message: 'is required with layout: csv (the labels CSV, keyed by file, sop_instance_uid, series_instance_uid or study_instance_uid)' });
        }
        if (data.source?.kind === 'dicomweb' && data.source.query.fromLabels === true && data.labels === undefined) {
          ctx.addIssue({ code: 'custom', path: ['labels'], message: 'is required with source.query.fromLabels: the CSV whose study, series or SOP Instance UIDs select the PACS images' });
        }
        if (data.layout === 'folders' && data.labels !== undefined) {
          ctx.addIssue({ code: 'custom', path: ['labels'], message: 'cannot be combined with layout: folders, where each class is a folder under data.dir' });
        }
      })
      // With a dicomweb source, dir is set by parseSiteConfig (the cache in stateDir, known only there).
      .transform(({ layout, labels, dir, ...rest }): { dir: string; source?: DataSource | undefined; layout: 'csv' | 'folders'; labels: string | undefined; validationFraction: number } => ({
        ...rest,
        dir: dir ?? '',
        layout: labels !== undefined ? 'csv' : (layout ?? 'folders'),
        labels,
      })),
    training: z
      .object({
        backend: backendSchema.default('auto'),
        /**
         * Threads that train data-parallel (each computes the gradient of a slice of every batch): 'auto' uses every
         * core on the wasm and cpu backends; the native TensorFlow backends use one (they spread each kernel
         * themselves).
         */
        threads: z.union([z.literal('auto'), z.int().min(1).max(256)]).default('auto'),
      })
      .strict()
      .default({ backend: 'auto', threads: 'auto' }),
    /** Where the agent keeps round state, copies of everything it sent, its approvals and its privacy ledger. */
    stateDir: z.string().min(1),
    policy: sitePolicySchema.prefault({}),
    /** Optional status endpoint (GET /health, GET /metrics) for the hospital's monitoring; loopback unless allowRemote. */
    status: statusConfigSchema.optional(),
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
    coordinator: {
      ...config.coordinator,
      ...(config.coordinator.kit ? { kit: resolve(baseDir, config.coordinator.kit) } : {}),
    },
    data: {
      ...config.data,
      dir: config.data.source?.kind === 'dicomweb' ? pacsCacheDir(resolve(baseDir, config.stateDir)) : resolve(baseDir, config.data.dir),
      labels: config.data.labels === undefined ? undefined : resolve(baseDir, config.data.labels),
      ...(config.data.source ? { source: resolveSourcePaths(config.data.source, baseDir) } : {}),
    },
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
