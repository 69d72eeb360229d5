/** A provisioning command that cannot proceed; the message says what is wrong and what to run instead. */
export class ProvisionError extends Error {
  override readonly name: string = 'ProvisionError';
}
