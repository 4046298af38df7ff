import "@/features/devices/devices.css";

import type { ReactNode } from "react";

import type { WindowStats } from "@/types/api";
import { formatValue } from "@/utils/format";

/** The server sends the slope as ``slopePerHour`` (value units per hour). */
type Stats = WindowStats & { slopePerHour?: number };

interface Props {
  stats1h: Stats | null;
  stats24h: Stats | null;
  unit: string | null;
}

const ARROW = { increasing: "↗", decreasing: "↘", stable: "→" } as const;

export function slopeOf(s: Stats): number | null {
  const v = s.slopePerHour;
  return typeof v === "number" && Number.isFinite(v) ? v : null;
}

function Trend({ s, unit }: { s: Stats; unit: string | null }) {
  const slope = slopeOf(s);
  const sign = slope !== null && slope > 0 ? "+" : "";
  return (
    <span className={`trend trend-${s.trend}`}>
      <span aria-hidden>{ARROW[s.trend] ?? ""}</span> {s.trend}
      {slope !== null ? (
        <span className="muted small">
          {" "}
          ({sign}
          {formatValue(slope)}
          {unit ? ` ${unit}` : ""}/h)
        </span>
      ) : null}
    </span>
  );
}

const ROWS: { label: string; cell: (s: Stats, unit: string | null) => ReactNode }[] = [
  { label: "Readings", cell: (s) => s.count.toLocaleString("en-US") },
  { label: "Average", cell: (s, u) => formatValue(s.avg, u) },
  { label: "Minimum", cell: (s, u) => formatValue(s.min, u) },
  { label: "Maximum", cell: (s, u) => formatValue(s.max, u) },
  { label: "Std deviation", cell: (s, u) => formatValue(s.std, u) },
  { label: "Median", cell: (s, u) => formatValue(s.median, u) },
  { label: "Trend", cell: (s, u) => <Trend s={s} unit={u} /> },
];

/** 1 h and 24 h figures side by side (from GET /api/devices/{id}). */
export function StatsPanel({ stats1h, stats24h, unit }: Props) {
  return (
    <section className="panel stats-panel" aria-labelledby="stats-heading">
      <h2 id="stats-heading">Statistics</h2>
      {!stats1h && !stats24h ? (
        <p className="muted">No statistics yet: the device has sent no reading lately.</p>
      ) : (
        <table>
          <thead>
            <tr>
              <th scope="col">
                <span className="sr-only">Figure</span>
              </th>
              <th scope="col">Last hour</th>
              <th scope="col">Last 24 h</th>
            </tr>
          </thead>
          <tbody>
            {ROWS.map((r) => (
              <tr key={r.label}>
                <th scope="row">{r.label}</th>
                <td>{stats1h ? r.cell(stats1h, unit) : "–"}</td>
                <td>{stats24h ? r.cell(stats24h, unit) : "–"}</td>
              </tr>
            ))}
          </tbody>
        </table>
      )}
    </section>
  );
}
