import { pino, type Logger, type LoggerOptions } from 'pino';

export type { Logger } from 'pino';

/** The levels FEDERA_LOG_LEVEL may name, quietest last. */
export const LOG_LEVELS = ['trace', 'debug', 'info', 'warn', 'error', 'fatal', 'silent'] as const;
export type LogLevel = (typeof LOG_LEVELS)[number];

let warnedAbout: string | undefined;

/**
 * The level FEDERA_LOG_LEVEL asks for (any case, surrounding spaces ignored). A value that is not a level must not
 * take a service down at start-up: it is named once on stderr, with the levels there are, and `fallback` is used.
 */
export function logLevelFromEnv(value: string | undefined, fallback: string): string {
  if (value === undefined || value.trim() === '') return fallback;
  const level = value.trim().toLowerCase();
  if ((LOG_LEVELS as readonly string[]).includes(level)) return level;
  if (warnedAbout !== value) {
    warnedAbout = value;
    process.stderr.write(`FEDERA_LOG_LEVEL=${value} is not a log level (${LOG_LEVELS.join(', ')}); logging at ${fallback}\n`);
  }
  return fallback;
}

/**
 * One structured logger per process component. Level comes from FEDERA_LOG_LEVEL so operators can raise
 * verbosity without touching config files; logs go to stderr so CLIs keep stdout for their own output.
 */
export function createLogger(component: string, options: LoggerOptions = {}): Logger {
  const level = logLevelFromEnv(process.env.FEDERA_LOG_LEVEL, options.level ?? 'info');
  return pino({ base: { component }, ...options, level }, pino.destination(2));
}
