import { Inject, Injectable, type OnApplicationBootstrap, type OnApplicationShutdown } from '@nestjs/common';
import { createLogger } from '@federa/shared';
import { Settings } from '../settings/settings.js';
import { AuditLog } from './audit-log.js';

/**
 * Signs the audit chain's head every `auditCheckpointMinutes` (when it moved), and once more at shutdown, so a
 * later rewrite of the chain contradicts a signature made before it.
 */
@Injectable()
export class AuditCheckpoints implements OnApplicationBootstrap, OnApplicationShutdown {
  private readonly log = createLogger('audit');
  private timer: NodeJS.Timeout | undefined;

  constructor(
    @Inject(AuditLog) private readonly audit: AuditLog,
    @Inject(Settings) private readonly settings: Settings,
  ) {}

  async onApplicationBootstrap(): Promise<void> {
    if (!this.audit.signer) {
      this.log.warn('no coordinator kit: audit checkpoints are not signed (insecure development mode)');
      return;
    }
    this.schedule((await this.settings.current()).auditCheckpointMinutes);
    this.settings.onChange((settings) => this.schedule(settings.auditCheckpointMinutes));
  }

  async onApplicationShutdown(): Promise<void> {
    if (this.timer) clearInterval(this.timer);
    this.timer = undefined;
    await this.sign();
  }

  private schedule(minutes: number): void {
    if (this.timer) clearInterval(this.timer);
    // sign() logs its own failures; the catch only keeps a bug in it from becoming an unhandled rejection.
    this.timer = setInterval(() => {
      this.sign().catch((error: unknown) => this.log.error({ err: error }, 'audit checkpoint timer failed'));
    }, minutes * 60_000);
    this.timer.unref();
  }

  private async sign(): Promise<void> {
    try {
      await this.audit.checkpoint();
    } catch (error) {
      this.log.error({ err: error }, 'could not sign an audit checkpoint');
    }
  }
}
