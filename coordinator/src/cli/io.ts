/** Where a CLI command writes and what it reads from its environment; tests pass their own. */
export interface CliIo {
  stdout(text: string): void;
  stderr(text: string): void;
  env: NodeJS.ProcessEnv;
  /** Whether stdout is a terminal (live views redraw in place there). */
  isTty?: boolean;
  /** Lines typed in answer to a prompt (a token, so it stays out of the shell history); null when there is no input. */
  readSecret?(prompt: string): Promise<string | null>;
}

/** A command used wrongly: exit code 2, the message and (where the command has one) a hint on its usage. */
export class CliUsageError extends Error {
  override readonly name = 'CliUsageError';
  constructor(
    message: string,
    readonly usage = '',
  ) {
    super(message);
  }
}

/** A command that could not do its job: exit code 1 and a message that says what to do next. */
export class CliFailure extends Error {
  override readonly name = 'CliFailure';
}
