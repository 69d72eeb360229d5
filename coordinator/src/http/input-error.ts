/** A REST input that failed validation: 400 with `{ error, issues: ["field.path: message"] }`. */
export class InputError extends Error {
  override readonly name = 'InputError';
  constructor(
    readonly summary: string,
    readonly issues: string[],
  ) {
    super(`${summary}: ${issues.join('; ')}`);
  }
}
