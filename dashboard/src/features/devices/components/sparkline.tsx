// The last points (recent history, then live) as one SVG polyline: cheap enough for hundreds of cards at once.
import { memo } from "react";

import { sortedPoints } from "@/features/devices/utils/readings";
import type { LivePoint } from "@/lib/live/slice";

/** Points a sparkline draws (the newest). */
export const SPARK_POINTS = 90;

const W = 100;
const H = 28;

export function sparkPath(points: LivePoint[], max = SPARK_POINTS): string {
  const tail = sortedPoints(points.length > max ? points.slice(-max) : points);
  if (tail.length < 2) return "";
  let lo = Infinity;
  let hi = -Infinity;
  let t0 = Infinity;
  let t1 = -Infinity;
  for (const p of tail) {
    if (p.v < lo) lo = p.v;
    if (p.v > hi) hi = p.v;
    if (p.t < t0) t0 = p.t;
    if (p.t > t1) t1 = p.t;
  }
  const dv = hi - lo || 1;
  const dt = t1 - t0 || 1;
  return tail
    .map((p) => `${(((p.t - t0) / dt) * W).toFixed(1)},${(H - 2 - ((p.v - lo) / dv) * (H - 4)).toFixed(1)}`)
    .join(" ");
}

export const Sparkline = memo(function Sparkline({ points }: { points: LivePoint[] | undefined }) {
  const path = points ? sparkPath(points) : "";
  return (
    <svg className="sparkline" viewBox={`0 0 ${W} ${H}`} preserveAspectRatio="none" aria-hidden>
      {path ? <polyline points={path} vectorEffect="non-scaling-stroke" /> : null}
    </svg>
  );
});
