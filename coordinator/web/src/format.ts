/** How numbers, sizes, times and hashes read on the page. */

import type { StudyStatus } from './types.js';

export function formatBytes(bytes: number): string {
  if (!Number.isFinite(bytes)) return '-';
  const units = ['B', 'KiB', 'MiB', 'GiB', 'TiB'];
  let value = bytes;
  let unit = 0;
  while (value >= 1024 && unit < units.length - 1) {
    value /= 1024;
    unit += 1;
  }
  return `${unit === 0 ? value : value.toFixed(value >= 100 ? 0 : 1)} ${units[unit]}`;
}

/** 0.8 s, 42 s, 3 min 05 s, 2 h 10 min. */
export function formatSeconds(seconds: number | null | undefined): string {
  if (seconds === null || seconds === undefined || !Number.isFinite(seconds)) return '-';
  if (seconds < 10) return `${seconds.toFixed(1)} s`;
  if (seconds < 60) return `${Math.round(seconds)} s`;
  const minutes = Math.floor(seconds / 60);
  if (minutes < 60) return `${minutes} min ${String(Math.round(seconds % 60)).padStart(2, '0')} s`;
  return `${Math.floor(minutes / 60)} h ${minutes % 60} min`;
}

/** "12 s ago", "in 3 min": relative to now. */
export function formatRelative(iso: string | null | undefined, now = Date.now()): string {
  if (!iso) return '-';
  const delta = (new Date(iso).getTime() - now) / 1000;
  if (!Number.isFinite(delta)) return '-';
  const text = formatSeconds(Math.abs(delta));
  return delta >= 0 ? `in ${text}` : `${text} ago`;
}

/** A countdown "m:ss" (or "h:mm:ss") to `iso`; "passed" once it is over. */
export function formatCountdown(iso: string, now = Date.now()): string {
  const left = Math.floor((new Date(iso).getTime() - now) / 1000);
  if (!Number.isFinite(left)) return '-';
  if (left <= 0) return 'passed';
  const h = Math.floor(left / 3600);
  const m = Math.floor((left % 3600) / 60);
  const s = String(left % 60).padStart(2, '0');
  return h > 0 ? `${h}:${String(m).padStart(2, '0')}:${s}` : `${m}:${s}`;
}

/** Local date and time, to the second. */
export function formatTime(iso: string | null | undefined): string {
  if (!iso) return '-';
  const date = new Date(iso);
  if (Number.isNaN(date.getTime())) return iso;
  return date.toLocaleString(undefined, { year: 'numeric', month: 'short', day: '2-digit', hour: '2-digit', minute: '2-digit', second: '2-digit' });
}

/** A figure in [0, 1] as a percentage, or "-" where the data cannot define it. */
export function formatFraction(value: number | null | undefined, digits = 1): string {
  return value === null || value === undefined || !Number.isFinite(value) ? '-' : `${(value * 100).toFixed(digits)}%`;
}

export function formatNumber(value: number | null | undefined, digits = 3): string {
  return value === null || value === undefined || !Number.isFinite(value) ? '-' : value.toFixed(digits);
}

export function shortHash(hash: string | null | undefined, length = 12): string {
  if (!hash) return '-';
  return hash.length > length ? `${hash.slice(0, length)}…` : hash;
}

/** "ε 2.31 (δ 1e-5)": differential privacy a site has spent; "-" when it shared none. */
export function formatEpsilon(epsilon: number | null | undefined, delta: number | null | undefined): string {
  if (epsilon === null || epsilon === undefined || !Number.isFinite(epsilon)) return '-';
  return delta === null || delta === undefined || !Number.isFinite(delta) ? `ε ${epsilon.toFixed(2)}` : `ε ${epsilon.toFixed(2)} (δ ${delta.toExponential()})`;
}

/** A study's differential privacy settings as its definition states them (a target epsilon already resolved to noise). */
export function formatPrivacySettings(p: StudyStatus['definition']['privacy']): string {
  if (!p || p.mode === 'none') return 'none';
  const parts = [
    p.clipNorm !== undefined ? `clip norm ${p.clipNorm}` : null,
    p.noiseMultiplier !== undefined ? `noise multiplier ${Number(p.noiseMultiplier.toPrecision(4))}` : null,
    p.targetEpsilon !== undefined ? `target ε ${p.targetEpsilon}` : null,
    p.delta !== undefined ? `δ ${p.delta.toExponential()}` : null,
    p.minSamplesPerSite !== undefined ? `calibrated for ${p.minSamplesPerSite} images per site` : null,
  ].filter((part) => part !== null);
  return `${p.mode === 'sample' ? 'sample-level (DP-SGD)' : 'site-level'}: ${parts.join(', ')}`;
}
