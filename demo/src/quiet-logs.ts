/**
 * Imported first by the demo: its own process logs only warnings, so the round tables stay readable, while the
 * coordinator and site agents it starts keep the level the user asked for (their logs go to files).
 */
export const childLogLevel = process.env.FEDERA_LOG_LEVEL ?? 'info';
process.env.FEDERA_LOG_LEVEL ??= 'warn';
