// The Live chart's points: the device's recent readings from the API (history) joined with
// the live ones from Socket.IO, merged by timestamp so the seam has neither a gap nor a double.
import type { LivePoint } from "@/lib/live/slice";
import type { History } from "@/types/api";

/**
 * The union of ``series`` in time order, one point per timestamp (a reading present in the
 * history and live, or replayed, counts once: the later series' value wins), the last ``max``.
 * Each series may be out of order (a replay delivers late events).
 */
export function mergePoints(max: number, ...series: readonly (readonly LivePoint[])[]): LivePoint[] {
  const byTime = new Map<number, LivePoint>();
  for (const points of series) for (const p of points) if (Number.isFinite(p.t)) byTime.set(p.t, p);
  const merged = [...byTime.values()].sort((a, b) => a.t - b.t);
  return merged.length > max ? merged.slice(merged.length - max) : merged;
}

/** A history answer's points as live points; none when it was downsampled (averages of buckets
 * are not readings: they would not line up with the live ones). */
export function historyPoints(history: History | undefined): LivePoint[] {
  if (!history || history.downsampled) return [];
  return history.points.map((p) => ({ t: Date.parse(p.timestamp), v: p.value }));
}

/** How far back to ask for ``points`` readings of a device sending every ``intervalMs``: half
 * as long again (the interval is nominal), at least a minute, at most an hour. */
export function historyWindowMs(points: number, intervalMs: number): number {
  const interval = Number.isFinite(intervalMs) && intervalMs > 0 ? intervalMs : 1000;
  return Math.min(3_600_000, Math.max(60_000, Math.ceil(points * interval * 1.5)));
}

/**
 * A downsampled answer holds more readings than asked for: the window that should hold about
 * ``points`` of them at the rate the answer shows (total readings over its span).
 */
export function narrowedWindowMs(history: History, points: number): number {
  const total = history.points.reduce((n, p) => n + p.count, 0);
  const span = Date.parse(history.to) - Date.parse(history.from);
  if (!(total > 0) || !(span > 0)) return 60_000;
  return Math.max(1000, Math.floor((span * points) / total));
}
