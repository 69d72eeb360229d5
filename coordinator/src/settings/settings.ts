import { z } from 'zod';
import { describeIssues } from '@federa/shared';
import type { AuditLog } from '../audit/audit-log.js';
import type { Database } from '../persistence/index.js';

/** Coordinator-wide settings an admin may change at run time; every change is audited. */
export const settingsSchema = z
  .object({
    /** The longest lifetime a new REST token may have. */
    tokenMaxLifetimeDays: z.int().min(1).max(3650).default(365),
    /** How often the audit chain's head is signed (when it moved). */
    auditCheckpointMinutes: z.int().min(1).max(1440).default(5),
  })
  .strict();

export type CoordinatorSettings = z.output<typeof settingsSchema>;
/** A change: only the keys given (PATCH /settings). */
export const settingsUpdateSchema = settingsSchema.partial().strict();

export class SettingsInputError extends Error {
  override readonly name = 'SettingsInputError';
  constructor(readonly issues: string[]) {
    super(`invalid settings: ${issues.join('; ')}`);
  }
}

export class Settings {
  private readonly listeners: Array<(settings: CoordinatorSettings) => void> = [];

  constructor(
    private readonly db: Database,
    private readonly audit: AuditLog,
  ) {}

  async current(): Promise<CoordinatorSettings> {
    const rows = await this.db.prisma.setting.findMany();
    // A stored value that no longer validates (hand-edited, or from a newer version) falls back to the default.
    const stored = Object.fromEntries(rows.map((row) => [row.key, row.value]));
    const parsed = settingsSchema.safeParse(stored);
    if (parsed.success) return parsed.data;
    const valid: Record<string, unknown> = {};
    for (const [key, value] of Object.entries(stored)) {
      if (settingsSchema.partial().safeParse({ [key]: value }).success) valid[key] = value;
    }
    return settingsSchema.parse(valid);
  }

  /** Applies a partial change; unknown keys and bad values are refused with the field named, nothing is stored. */
  async update(body: unknown, actor: string): Promise<CoordinatorSettings> {
    const parsed = settingsUpdateSchema.safeParse(body);
    if (!parsed.success) throw new SettingsInputError(describeIssues(parsed.error));
    const before = await this.current();
    const changes = Object.entries(parsed.data).filter(([key, value]) => before[key as keyof CoordinatorSettings] !== value);
    if (changes.length > 0) {
      await this.audit.transaction(async (tx) => {
        for (const [key, value] of changes) {
          await tx.setting.upsert({ where: { key }, create: { key, value, updatedBy: actor }, update: { value, updatedBy: actor } });
        }
        return {
          result: undefined,
          audit: changes.map(([key, value]) => ({
            kind: 'setting.changed',
            actor,
            details: { key, from: before[key as keyof CoordinatorSettings], to: value },
          })),
        };
      });
    }
    const after = await this.current();
    for (const listener of this.listeners) listener(after);
    return after;
  }

  onChange(listener: (settings: CoordinatorSettings) => void): void {
    this.listeners.push(listener);
  }
}
