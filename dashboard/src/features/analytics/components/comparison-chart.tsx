// Comparative chart: each device's min..max (bar) and average (dot) over the period, on one
// scale: 0 % = the bottom of its normal range, 100 % = the top (devices without one: the range
// of their type over the period, else their own). Outside 0..100 is outside normal.
import { useMemo } from "react";

import { Plot, type PlotData, type PlotLayout } from "@/components/plot";
import { QueryStatus } from "@/components/query-status";
import { useTheme } from "@/components/theme";
import { useAnalyticsDeviceRangesQuery } from "@/features/analytics/api/get-device-ranges";
import { useAnalyticsSummaryQuery } from "@/features/analytics/api/get-analytics-summary";
import { SUMMARY_POLL_MS } from "@/features/analytics/components/device-heatmap";
import { CsvButton, PngButton } from "@/features/analytics/components/export-buttons";
import { hoursLabel } from "@/features/analytics/components/hours-picker";
import type { DeviceRange, SummaryDevice } from "@/features/analytics/types";
import { deviceScale, toPercent, type Scale } from "@/features/analytics/utils/stats";
import { formatValue } from "@/utils/format";

import "@/features/analytics/analytics.css";

const NAME = "Devices compared to their normal range";
const MAX_DEVICES = 60;

export interface ComparisonRow {
  deviceId: string;
  type: string;
  unit: string | null;
  avg: number | null;
  min: number | null;
  max: number | null;
  scaleLow: number;
  scaleHigh: number;
  basis: Scale["basis"];
  avgPct: number | null;
  minPct: number | null;
  maxPct: number | null;
}

export function comparisonRows(devices: SummaryDevice[], ranges: DeviceRange[]): ComparisonRow[] {
  const byId = new Map(ranges.map((r) => [r.deviceId, r]));
  return devices.flatMap((d) => {
    const scale = deviceScale(d, byId, devices);
    if (!scale || d.avg === null) return [];
    return [
      {
        deviceId: d.deviceId,
        type: d.type,
        unit: d.unit,
        avg: d.avg,
        min: d.min,
        max: d.max,
        scaleLow: scale.lo,
        scaleHigh: scale.hi,
        basis: scale.basis,
        avgPct: toPercent(d.avg, scale),
        minPct: toPercent(d.min, scale),
        maxPct: toPercent(d.max, scale),
      },
    ];
  });
}

export function comparisonTraces(rows: ComparisonRow[], dark = false): PlotData {
  const x = rows.map((r) => r.deviceId);
  const outside = (r: ComparisonRow) => (r.maxPct ?? 0) > 100 || (r.minPct ?? 100) < 0;
  return [
    {
      type: "bar",
      x,
      base: rows.map((r) => r.minPct ?? 0),
      y: rows.map((r) => (r.maxPct ?? 0) - (r.minPct ?? 0)),
      marker: { color: rows.map((r) => (outside(r) ? "rgba(220,38,38,0.45)" : "rgba(37,99,235,0.4)")) },
      name: "min..max",
      customdata: rows.map((r) => [
        formatValue(r.min, r.unit),
        formatValue(r.max, r.unit),
        `${formatValue(r.scaleLow)}..${formatValue(r.scaleHigh, r.unit)} (${r.basis})`,
      ]),
      hovertemplate: "%{x}<br>min %{customdata[0]}, max %{customdata[1]}<br>scale %{customdata[2]}<extra></extra>",
    } as PlotData[number],
    {
      type: "scatter",
      mode: "markers",
      x,
      y: rows.map((r) => r.avgPct),
      marker: { color: dark ? "#f8fafc" : "#111827", size: 8, symbol: "diamond" },
      name: "average",
      customdata: rows.map((r) => formatValue(r.avg, r.unit)),
      hovertemplate: "%{x}<br>average %{customdata} (%{y:.0f} %)<extra></extra>",
    },
  ];
}

export function ComparisonChart({ hours }: { hours: number }) {
  const summary = useAnalyticsSummaryQuery(hours, { pollingInterval: SUMMARY_POLL_MS });
  const ranges = useAnalyticsDeviceRangesQuery();
  const rows = useMemo(
    () => comparisonRows(summary.data?.devices ?? [], ranges.data ?? []).slice(0, MAX_DEVICES),
    [summary.data, ranges.data],
  );
  const { dark } = useTheme();
  const data = useMemo(() => comparisonTraces(rows, dark), [rows, dark]);
  const layout = useMemo<PlotLayout>(
    () => ({
      barmode: "overlay",
      yaxis: { title: { text: "% of normal range" }, zeroline: false },
      shapes: [0, 100].map((y) => ({
        type: "line",
        xref: "paper",
        x0: 0,
        x1: 1,
        y0: y,
        y1: y,
        line: { color: "#16a34a", width: 1, dash: "dot" },
      })),
      margin: { l: 56, r: 16, t: 16, b: 80 },
    }),
    [],
  );
  const error = summary.error ?? ranges.error;
  return (
    <section className="panel" aria-labelledby="comparison-title">
      <div className="row section-head">
        <h2 id="comparison-title">
          {NAME}, last {hoursLabel(hours)}
        </h2>
        <span className="spacer" />
        <PngButton chart={NAME} disabled={!rows.length} />
        <CsvButton name="device comparison" rows={rows as unknown as Record<string, unknown>[]} />
      </div>
      <p className="muted">
        Bar: lowest to highest reading; dot: average. 0 % and 100 % (dotted) are the bottom and
        top of each device&apos;s normal range; red bars leave it.
      </p>
      <QueryStatus error={error} loading={summary.isLoading || ranges.isLoading} />
      {rows.length ? <Plot name={NAME} data={data} layout={layout} height={320} /> : null}
      {summary.data && !rows.length ? <p className="muted">No readings in this period yet.</p> : null}
    </section>
  );
}
