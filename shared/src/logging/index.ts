import { pino, type Logger, type LoggerOptions } from 'pino';

export type { Logger } from 'pino';

/**
 * One structured logger per process component. Level comes from FEDERA_LOG_LEVEL so operators can raise
 * verbosity without touching config files; logs go to stderr so CLIs keep stdout for their own output.
 */
export function createLogger(component: string, options: LoggerOptions = {}): Logger {
  const level = process.env.FEDERA_LOG_LEVEL ?? options.level ?? 'info';
  return pino({ base: { component }, ...options, level }, pino.destination(2));
}
