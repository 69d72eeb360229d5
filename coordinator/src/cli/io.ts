/** Where a CLI command writes and what it reads from its environment; tests pass their own. */
export interface CliIo {
  stdout(text: string): void;
  stderr(text: string): void;
  env: NodeJS.ProcessEnv;
}

/** A command used wrongly: exit code 2, the message and the command's usage. */
export class CliUsageError extends Error {
  override readonly name = 'CliUsageError';
  constructor(
    message: string,
    readonly usage: string,
  ) {
    super(message);
  }
}
