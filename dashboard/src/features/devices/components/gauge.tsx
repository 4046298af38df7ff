// A half-circle gauge drawn in SVG (Plotly's indicator is not in the basic bundle, and 500
// Plotly gauges would not stay smooth): threshold bands, threshold marks, the value as an arc.
import { memo } from "react";

import { fraction, gaugeScale } from "@/features/devices/utils/readings";
import type { ReadingStatus, Thresholds } from "@/types/api";
import { formatValue } from "@/utils/format";

const CX = 60;
const CY = 58;
const R = 46;

function point(f: number, r = R): [number, number] {
  const a = Math.PI * (1 - f);
  return [CX + r * Math.cos(a), CY - r * Math.sin(a)];
}

function arc(f0: number, f1: number, r = R): string {
  const [x0, y0] = point(f0, r);
  const [x1, y1] = point(f1, r);
  return `M${x0.toFixed(2)} ${y0.toFixed(2)}A${r} ${r} 0 0 1 ${x1.toFixed(2)} ${y1.toFixed(2)}`;
}

interface Props {
  value: number | null;
  status: ReadingStatus | "unknown";
  thresholds: Thresholds;
  range?: { min?: number | null; max?: number | null };
  unit?: string | null;
}

export const Gauge = memo(function Gauge({ value, status, thresholds: t, range, unit }: Props) {
  const scale = gaugeScale(value, t, range);
  const f = (v: number) => fraction(v, scale);
  const bands: { from: number; to: number; cls: string }[] = [];
  const lo = t.normalMin ?? t.alertMin;
  const hi = t.normalMax ?? t.alertMax;
  if (t.alertMin !== null) bands.push({ from: 0, to: f(t.alertMin), cls: "band-crit" });
  if (t.alertMin !== null && t.normalMin !== null && t.normalMin > t.alertMin)
    bands.push({ from: f(t.alertMin), to: f(t.normalMin), cls: "band-warn" });
  if (lo !== null || hi !== null)
    bands.push({ from: lo !== null ? f(lo) : 0, to: hi !== null ? f(hi) : 1, cls: "band-ok" });
  if (t.alertMax !== null && t.normalMax !== null && t.alertMax > t.normalMax)
    bands.push({ from: f(t.normalMax), to: f(t.alertMax), cls: "band-warn" });
  if (t.alertMax !== null) bands.push({ from: f(t.alertMax), to: 1, cls: "band-crit" });
  const marks = [t.alertMin, t.normalMin, t.normalMax, t.alertMax].filter(
    (v): v is number => v !== null,
  );
  const vf = value === null ? null : f(value);
  const label =
    value === null
      ? "no reading"
      : `${formatValue(value, unit)} on a scale of ${formatValue(scale.min)} to ${formatValue(scale.max)}`;
  return (
    <svg className="gauge" viewBox="0 0 120 64" role="img" aria-label={`Gauge: ${label}`}>
      <path className="gauge-track" d={arc(0, 1)} />
      {bands
        .filter((b) => b.to > b.from)
        .map((b, i) => (
          <path key={i} className={`gauge-band ${b.cls}`} d={arc(b.from, b.to, R + 7)} />
        ))}
      {vf !== null && vf > 0 ? <path className={`gauge-value gv-${status}`} d={arc(0, vf)} /> : null}
      {marks.map((m, i) => {
        const [x0, y0] = point(f(m), R - 7);
        const [x1, y1] = point(f(m), R + 10);
        return <line key={i} className="gauge-mark" x1={x0} y1={y0} x2={x1} y2={y1} />;
      })}
      {vf !== null ? (
        <line
          className="gauge-needle"
          x1={CX}
          y1={CY}
          x2={point(vf, R - 10)[0]}
          y2={point(vf, R - 10)[1]}
        />
      ) : null}
      <circle className="gauge-hub" cx={CX} cy={CY} r={2.5} />
    </svg>
  );
});
