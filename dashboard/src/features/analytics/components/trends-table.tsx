// Trends across devices: per device average, range, readings and availability over the
// period (summary), and the least-squares slope per hour and first-to-last change of its
// hourly averages (computed from the heatmap rows, as the server's /trends does).
import { useMemo, useState } from "react";
import { Link } from "react-router-dom";

import { QueryStatus } from "@/components/query-status";
import { useAnalyticsSummaryQuery } from "@/features/analytics/api/get-analytics-summary";
import { SUMMARY_POLL_MS } from "@/features/analytics/components/device-heatmap";
import { CsvButton } from "@/features/analytics/components/export-buttons";
import type { AnalyticsSummary } from "@/features/analytics/types";
import { trendsByDevice, type RowTrend } from "@/features/analytics/utils/stats";
import { formatValue } from "@/utils/format";

import "@/features/analytics/analytics.css";

export type Direction = "rising" | "falling" | "stable" | "unknown";

export interface TrendRow {
  deviceId: string;
  type: string;
  unit: string | null;
  avg: number | null;
  min: number | null;
  max: number | null;
  readings: number;
  availability: number;
  slopePerHour: number | null;
  change: number | null;
  direction: Direction;
}

/** Rising/falling when the fitted line moves by more than 10 % of the device's range. */
export function direction(trend: RowTrend | undefined, span: number, range: number | null): Direction {
  if (!trend || trend.slopePerHour === null) return "unknown";
  if (!range) return trend.slopePerHour === 0 ? "stable" : trend.slopePerHour > 0 ? "rising" : "falling";
  const moved = (trend.slopePerHour * span) / range;
  return moved > 0.1 ? "rising" : moved < -0.1 ? "falling" : "stable";
}

export function trendRows(summary: AnalyticsSummary): TrendRow[] {
  const trends = trendsByDevice(summary.heatmap);
  return summary.devices.map((d) => {
    const t = trends.get(d.deviceId);
    const range = d.min !== null && d.max !== null ? d.max - d.min : null;
    return {
      deviceId: d.deviceId,
      type: d.type,
      unit: d.unit,
      avg: d.avg,
      min: d.min,
      max: d.max,
      readings: d.readings,
      availability: d.availability,
      slopePerHour: t?.slopePerHour ?? null,
      change: t?.change ?? null,
      direction: direction(t, summary.hours, range),
    };
  });
}

const ARROW: Record<Direction, string> = { rising: "↑", falling: "↓", stable: "→", unknown: "" };
const SORTS = {
  device: { label: "Device", key: (r: TrendRow) => r.deviceId },
  slope: { label: "Steepest change", key: (r: TrendRow) => -Math.abs(relative(r)) },
  availability: { label: "Lowest availability", key: (r: TrendRow) => r.availability },
} as const;
type SortKey = keyof typeof SORTS;

function relative(r: TrendRow): number {
  const range = r.min !== null && r.max !== null ? r.max - r.min : 0;
  return r.slopePerHour === null ? 0 : range ? r.slopePerHour / range : r.slopePerHour;
}

const SHOWN = 50;
export const TREND_COLUMNS = [
  "deviceId",
  "type",
  "unit",
  "avg",
  "min",
  "max",
  "readings",
  "availability",
  "slopePerHour",
  "change",
  "direction",
];

export function TrendsTable({ hours }: { hours: number }) {
  const { data, error, isLoading } = useAnalyticsSummaryQuery(hours, { pollingInterval: SUMMARY_POLL_MS });
  const [sort, setSort] = useState<SortKey>("device");
  const [filter, setFilter] = useState("");
  const [all, setAll] = useState(false);
  const rows = useMemo(() => (data ? trendRows(data) : []), [data]);
  const shown = useMemo(() => {
    const f = filter.trim().toLowerCase();
    const key = SORTS[sort].key;
    return rows
      .filter((r) => !f || r.deviceId.toLowerCase().includes(f) || r.type.toLowerCase().includes(f))
      .sort((a, b) => {
        const ka = key(a);
        const kb = key(b);
        return ka < kb ? -1 : ka > kb ? 1 : a.deviceId.localeCompare(b.deviceId);
      });
  }, [rows, filter, sort]);
  const visible = all ? shown : shown.slice(0, SHOWN);

  return (
    <section className="panel" aria-labelledby="trends-title">
      <div className="row section-head">
        <h2 id="trends-title">Trends across devices</h2>
        <span className="spacer" />
        <label className="inline">
          Filter
          <input value={filter} onChange={(e) => setFilter(e.target.value)} placeholder="device or type" size={12} />
        </label>
        <label className="inline">
          Sort
          <select value={sort} onChange={(e) => setSort(e.target.value as SortKey)}>
            {Object.entries(SORTS).map(([k, s]) => (
              <option key={k} value={k}>
                {s.label}
              </option>
            ))}
          </select>
        </label>
        <CsvButton name="device trends" rows={shown as unknown as Record<string, unknown>[]} columns={TREND_COLUMNS} />
      </div>
      <QueryStatus error={error} loading={isLoading} />
      {data ? (
        <div className="table-scroll">
          <table className="trends-table">
            <caption className="sr-only">Per device figures and trends, last {hours} hours</caption>
            <thead>
              <tr>
                <th scope="col">Device</th>
                <th scope="col">Type</th>
                <th scope="col" className="num">Average</th>
                <th scope="col" className="num">Min</th>
                <th scope="col" className="num">Max</th>
                <th scope="col" className="num">Readings</th>
                <th scope="col" className="num">Availability</th>
                <th scope="col" className="num">Slope / hour</th>
                <th scope="col" className="num">Change</th>
                <th scope="col">Trend</th>
              </tr>
            </thead>
            <tbody>
              {visible.map((r) => (
                <tr key={r.deviceId} data-device-id={r.deviceId}>
                  <th scope="row">
                    <Link to={`/devices/${encodeURIComponent(r.deviceId)}`}>{r.deviceId}</Link>
                  </th>
                  <td>{r.type}</td>
                  <td className="num">{formatValue(r.avg, r.unit)}</td>
                  <td className="num">{formatValue(r.min)}</td>
                  <td className="num">{formatValue(r.max)}</td>
                  <td className="num">{r.readings.toLocaleString()}</td>
                  <td className="num">{(r.availability * 100).toFixed(0)} %</td>
                  <td className="num">{r.slopePerHour === null ? "–" : signed(r.slopePerHour)}</td>
                  <td className="num">{r.change === null ? "–" : signed(r.change)}</td>
                  <td className={`dir dir-${r.direction}`}>
                    <span aria-hidden>{ARROW[r.direction]}</span> {r.direction === "unknown" ? "–" : r.direction}
                  </td>
                </tr>
              ))}
              {visible.length === 0 ? (
                <tr>
                  <td colSpan={10} className="muted">
                    No devices match.
                  </td>
                </tr>
              ) : null}
            </tbody>
          </table>
          {shown.length > SHOWN ? (
            <button type="button" className="link" onClick={() => setAll(!all)}>
              {all ? `Show the first ${SHOWN}` : `Show all ${shown.length} devices`}
            </button>
          ) : null}
        </div>
      ) : null}
    </section>
  );
}

function signed(v: number): string {
  const s = formatValue(Math.abs(v));
  return v > 0 ? `+${s}` : v < 0 ? `−${s}` : s;
}
