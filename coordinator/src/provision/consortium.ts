import { readFile } from 'node:fs/promises';
import { LineCounter, parseDocument } from 'yaml';
import { z } from 'zod';
import { describeIssues, dnsNameSchema, ipAddressSchema, siteIdSchema } from '@federa/shared';
import { ProvisionError } from './errors.js';

export const COORDINATOR_PARTICIPANT = 'coordinator';

/** `coordinator` names the coordinator's kit in `renew`, so no site may take it. */
export const provisionSiteIdSchema = siteIdSchema.refine((id) => id !== COORDINATOR_PARTICIPANT, {
  message: `"${COORDINATOR_PARTICIPANT}" is reserved for the coordinator's kit`,
});

export const validityDaysSchema = z.int().min(1).max(36_500);

export const DEFAULT_VALIDITY_DAYS = { ca: 3650, server: 365, site: 365 } as const;

/** consortium.yaml: the one file a consortium operator writes before `federa provision`. */
export const consortiumConfigSchema = z
  .object({
    consortium: z
      .object({
        /** Goes into every certificate's Organization, which X.509 limits to 64 characters. */
        name: z.string().trim().min(1).max(64),
      })
      .strict(),
    coordinator: z
      .object({
        /** Every DNS name sites use to reach the coordinator; all go into its certificate. */
        hostnames: z.array(dnsNameSchema).min(1),
        ips: z.array(ipAddressSchema).default([]),
      })
      .strict(),
    sites: z.array(z.object({ id: provisionSiteIdSchema }).strict()),
    validityDays: z
      .object({
        ca: validityDaysSchema.default(DEFAULT_VALIDITY_DAYS.ca),
        server: validityDaysSchema.default(DEFAULT_VALIDITY_DAYS.server),
        site: validityDaysSchema.default(DEFAULT_VALIDITY_DAYS.site),
      })
      .strict()
      .prefault({}),
  })
  .strict()
  .superRefine((config, context) => {
    const firstIndex = new Map<string, number>();
    config.sites.forEach((site, index) => {
      const earlier = firstIndex.get(site.id);
      if (earlier !== undefined) {
        context.addIssue({ code: 'custom', path: ['sites', index, 'id'], message: `duplicate site id "${site.id}" (also sites.${earlier}.id)` });
      } else {
        firstIndex.set(site.id, index);
      }
    });
    for (const leaf of ['server', 'site'] as const) {
      if (config.validityDays[leaf] > config.validityDays.ca) {
        context.addIssue({
          code: 'custom',
          path: ['validityDays', leaf],
          message: `${config.validityDays[leaf]} days is longer than the CA's ${config.validityDays.ca}; a certificate cannot outlive its CA`,
        });
      }
    }
  });

export type ConsortiumConfig = z.output<typeof consortiumConfigSchema>;

export class ConsortiumConfigError extends ProvisionError {
  override readonly name = 'ConsortiumConfigError';
}

export function parseConsortiumConfig(input: unknown, source = 'consortium config'): ConsortiumConfig {
  const parsed = consortiumConfigSchema.safeParse(input);
  if (!parsed.success) {
    throw new ConsortiumConfigError(`${source} is invalid:\n  ${describeIssues(parsed.error).join('\n  ')}`);
  }
  return parsed.data;
}

export function parseConsortiumYaml(text: string, source = 'consortium config'): ConsortiumConfig {
  const lineCounter = new LineCounter();
  const document = parseDocument(text, { lineCounter, prettyErrors: false });
  const [first] = document.errors;
  if (first !== undefined) {
    const position = lineCounter.linePos(first.pos[0]);
    const where = ` at line ${position.line}, column ${position.col}`;
    throw new ConsortiumConfigError(`${source} is not valid YAML${where}: ${first.message}`);
  }
  return parseConsortiumConfig(document.toJS(), source);
}

export async function loadConsortiumFile(path: string): Promise<ConsortiumConfig> {
  let text: string;
  try {
    text = await readFile(path, 'utf8');
  } catch (error) {
    const code = (error as NodeJS.ErrnoException).code;
    throw new ConsortiumConfigError(code === 'ENOENT' ? `${path} does not exist` : `cannot read ${path}: ${(error as Error).message}`);
  }
  return parseConsortiumYaml(text, path);
}
