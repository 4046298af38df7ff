import type { LiveDevice, LivePoint } from "@/lib/live/slice";
import type { Connectivity, DeviceSummary, ReadingStatus, Thresholds } from "@/types/api";

/** Used when a device's interval cannot be told yet (the list does not carry it). */
export const DEFAULT_INTERVAL_MS = 10_000;

export interface Reading {
  value: number;
  status: ReadingStatus;
  timestamp: string;
  t: number; // ms since epoch
  unit: string | null;
  live: boolean;
}

/** The newer of the REST reading and the live one. */
export function currentReading(device: DeviceSummary, live: LiveDevice | undefined): Reading | null {
  const rest = device.lastReading
    ? { ...device.lastReading, t: Date.parse(device.lastReading.timestamp), unit: device.unit, live: false }
    : null;
  const fromLive = live
    ? {
        value: live.value,
        status: live.status,
        timestamp: live.timestamp,
        t: Date.parse(live.timestamp),
        unit: live.unit ?? device.unit,
        live: true,
      }
    : null;
  if (!rest) return fromLive;
  if (!fromLive) return rest;
  return fromLive.t >= rest.t ? fromLive : rest;
}

export function currentConnectivity(device: DeviceSummary, live: LiveDevice | undefined): Connectivity {
  return live?.connectivity ?? device.connectivity;
}

/** The reporting interval, from the spacing of the last live points (their median gap). */
export function inferInterval(points: LivePoint[] | undefined, fallback = DEFAULT_INTERVAL_MS): number {
  if (!points || points.length < 3) return fallback;
  const tail = points.slice(-21);
  const gaps: number[] = [];
  for (let i = 1; i < tail.length; i++) {
    const gap = tail[i]!.t - tail[i - 1]!.t;
    if (gap > 0) gaps.push(gap);
  }
  if (gaps.length < 2) return fallback;
  gaps.sort((a, b) => a - b);
  return gaps[Math.floor(gaps.length / 2)]!;
}

export function isStale(readingT: number | null, intervalMs: number, now: number): boolean {
  return readingT === null || Number.isNaN(readingT) || now - readingT > 3 * intervalMs;
}

/** Points in time order (a replay can deliver some late); a copy only when needed. */
export function sortedPoints(points: LivePoint[]): LivePoint[] {
  for (let i = 1; i < points.length; i++) {
    if (points[i]!.t < points[i - 1]!.t) return [...points].sort((a, b) => a.t - b.t);
  }
  return points;
}

export interface GaugeScale {
  min: number;
  max: number;
}

/**
 * Gauge bounds: the thresholds with a margin either side (else the 24 h range, else around the
 * value). A value outside is drawn at the end of the scale.
 */
export function gaugeScale(
  value: number | null,
  t: Thresholds,
  fallback: { min?: number | null; max?: number | null } = {},
): GaugeScale {
  const known = [t.alertMin, t.normalMin, t.normalMax, t.alertMax].filter(
    (v): v is number => v !== null && Number.isFinite(v),
  );
  if (known.length < 2) {
    for (const v of [fallback.min, fallback.max]) if (v !== null && v !== undefined) known.push(v);
  }
  if (known.length < 2 && value !== null && Number.isFinite(value)) known.push(value);
  if (!known.length) return { min: 0, max: 1 };
  let lo = Math.min(...known);
  let hi = Math.max(...known);
  if (hi - lo < 1e-9) {
    const pad = Math.abs(lo) * 0.1 || 1;
    return { min: lo - pad, max: hi + pad };
  }
  const pad = (hi - lo) * 0.1;
  lo -= pad;
  hi += pad;
  return { min: lo, max: hi };
}

export function fraction(v: number, scale: GaugeScale): number {
  return Math.min(1, Math.max(0, (v - scale.min) / (scale.max - scale.min)));
}
