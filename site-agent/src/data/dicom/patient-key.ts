import { createHash } from 'node:crypto';

/**
 * A stable pseudonym for a Patient ID (SHA-256, lower-case hex): equal IDs give equal keys on every run. The header
 * reader keeps only this, so the ID itself is never stored, logged or sent; it serves to keep a patient's images on
 * one side of the train/validation split.
 */
export function patientKeyOf(patientId: string): string {
  return createHash('sha256').update('federa-patient\0').update(patientId, 'utf8').digest('hex');
}
