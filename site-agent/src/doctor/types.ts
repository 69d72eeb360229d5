export interface DoctorCheck {
  name: string;
  ok: boolean;
  /** What was found. */
  detail: string;
  /** What to do about a failed (or worrying) check. */
  hint?: string;
  /** True for findings that work but deserve attention (e.g. a certificate expiring soon). */
  warning?: boolean;
}
