// Small numeric helpers for the analytics views.
import type { DeviceRange, Heatmap, SummaryDevice } from "@/features/analytics/types";

/** Least-squares slope of (x, y) points; null with fewer than two (as the server's). */
export function slope(points: [number, number][]): number | null {
  if (points.length < 2) return null;
  const n = points.length;
  const mx = points.reduce((s, [x]) => s + x, 0) / n;
  const my = points.reduce((s, [, y]) => s + y, 0) / n;
  const sxx = points.reduce((s, [x]) => s + (x - mx) ** 2, 0);
  if (!sxx) return null;
  return points.reduce((s, [x, y]) => s + (x - mx) * (y - my), 0) / sxx;
}

export interface RowTrend {
  slopePerHour: number | null;
  change: number | null; // last hour's average minus the first's
  first: number | null;
  last: number | null;
}

/** Slope per hour and change over a heatmap row (hourly averages, column i = hour i). */
export function rowTrend(row: (number | null)[]): RowTrend {
  const points: [number, number][] = [];
  row.forEach((v, i) => {
    if (v !== null && Number.isFinite(v)) points.push([i, v]);
  });
  const first = points[0]?.[1] ?? null;
  const last = points[points.length - 1]?.[1] ?? null;
  return {
    slopePerHour: slope(points),
    change: first !== null && last !== null ? last - first : null,
    first,
    last,
  };
}

export function trendsByDevice(heatmap: Heatmap): Map<string, RowTrend> {
  return new Map(heatmap.devices.map((d, i) => [d, rowTrend(heatmap.values[i] ?? [])]));
}

/** [lo, hi] of the finite values, or null. */
export function extent(values: (number | null | undefined)[]): [number, number] | null {
  let lo = Infinity;
  let hi = -Infinity;
  for (const v of values) {
    if (v === null || v === undefined || !Number.isFinite(v)) continue;
    if (v < lo) lo = v;
    if (v > hi) hi = v;
  }
  return lo <= hi ? [lo, hi] : null;
}

export interface Scale {
  lo: number;
  hi: number;
  basis: "normal range" | "type range" | "own range";
}

/**
 * What 0 % and 100 % mean for a device: its normal range when it has one, else the range of
 * every device of its type over the period, else its own min..max.
 */
export function deviceScale(
  device: SummaryDevice,
  ranges: Map<string, DeviceRange>,
  devices: SummaryDevice[],
): Scale | null {
  const r = ranges.get(device.deviceId);
  if (r && r.normalMin !== null && r.normalMax !== null && r.normalMax > r.normalMin)
    return { lo: r.normalMin, hi: r.normalMax, basis: "normal range" };
  const sameType = devices.filter((d) => d.type === device.type);
  const t = extent(sameType.flatMap((d) => [d.min, d.max]));
  if (t && t[1] > t[0] && sameType.length > 1) return { lo: t[0], hi: t[1], basis: "type range" };
  const own = extent([device.min, device.max]);
  if (own && own[1] > own[0]) return { lo: own[0], hi: own[1], basis: "own range" };
  return null;
}

export function toPercent(value: number | null, scale: Scale): number | null {
  return value === null ? null : ((value - scale.lo) / (scale.hi - scale.lo)) * 100;
}

// A perceptually ordered scale (viridis stops), t in [0, 1].
const STOPS: [number, number, number][] = [
  [68, 1, 84],
  [59, 82, 139],
  [33, 145, 140],
  [94, 201, 98],
  [253, 231, 37],
];

export function colour(t: number): string {
  const x = Math.min(1, Math.max(0, t)) * (STOPS.length - 1);
  const i = Math.min(STOPS.length - 2, Math.floor(x));
  const f = x - i;
  const a = STOPS[i] ?? STOPS[0]!;
  const b = STOPS[i + 1] ?? a;
  const c = a.map((v, k) => Math.round(v + (b[k]! - v) * f));
  return `rgb(${c[0]}, ${c[1]}, ${c[2]})`;
}

/** Dark text on the light end of the scale, white on the dark end. */
export function textColour(t: number): string {
  return t > 0.6 ? "#111" : "#fff";
}
