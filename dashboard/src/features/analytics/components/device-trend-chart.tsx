// One device over the period: hourly average with its min..max band and the fitted line,
// the slope per hour and change (GET /api/analytics/trends/{id}), and the live 1 h / 24 h
// trend. Up to three devices can be compared on the same chart.
import { useMemo, useState } from "react";

import { Plot, type PlotData, type PlotLayout } from "@/components/plot";
import { QueryStatus } from "@/components/query-status";
import { useAnalyticsDeviceTrendQuery } from "@/features/analytics/api/get-device-trend";
import { useAnalyticsSummaryQuery } from "@/features/analytics/api/get-analytics-summary";
import { SUMMARY_POLL_MS } from "@/features/analytics/components/device-heatmap";
import { CsvButton, PngButton } from "@/features/analytics/components/export-buttons";
import type { DeviceTrend } from "@/features/analytics/types";
import { slope } from "@/features/analytics/utils/stats";
import { formatValue } from "@/utils/format";

import "@/features/analytics/analytics.css";

const NAME = "Device trend";
const COLOURS = ["#2563eb", "#dc2626", "#16a34a"];

export function trendTraces(trend: DeviceTrend, colourIndex = 0, band = true): PlotData {
  const c = COLOURS[colourIndex % COLOURS.length] ?? "#2563eb";
  const x = trend.hourly.map((p) => p.hour);
  const traces: PlotData = [];
  if (band) {
    traces.push(
      { type: "scatter", mode: "lines", x, y: trend.hourly.map((p) => p.max), line: { width: 0 }, hoverinfo: "skip", name: `${trend.deviceId} max` },
      {
        type: "scatter",
        mode: "lines",
        x,
        y: trend.hourly.map((p) => p.min),
        fill: "tonexty",
        fillcolor: `${c}22`,
        line: { width: 0 },
        hoverinfo: "skip",
        name: `${trend.deviceId} min`,
      },
    );
  }
  traces.push({
    type: "scatter",
    mode: "lines+markers",
    x,
    y: trend.hourly.map((p) => p.avg),
    line: { color: c, width: 2 },
    marker: { size: 4 },
    name: trend.deviceId,
    hovertemplate: `%{x}<br>${trend.deviceId}: %{y:.2f}${trend.unit ? ` ${trend.unit}` : ""}<extra></extra>`,
  });
  const pts = trend.hourly.flatMap((p, i) => (p.avg === null ? [] : [[i, p.avg] as [number, number]]));
  const k = slope(pts);
  if (k !== null && pts.length) {
    const mx = pts.reduce((s, [a]) => s + a, 0) / pts.length;
    const my = pts.reduce((s, [, b]) => s + b, 0) / pts.length;
    traces.push({
      type: "scatter",
      mode: "lines",
      x: [x[0] ?? "", x[x.length - 1] ?? ""],
      y: [my + k * (0 - mx), my + k * (x.length - 1 - mx)],
      line: { color: c, width: 1, dash: "dash" },
      hoverinfo: "skip",
      name: `${trend.deviceId} fit`,
    });
  }
  return traces;
}

function TrendFigures({ trend }: { trend: DeviceTrend }) {
  const u = trend.unit ?? "";
  return (
    <dl className="figures">
      <div>
        <dt>Slope</dt>
        <dd>{trend.slopePerHour === null ? "–" : `${formatValue(trend.slopePerHour)} ${u}/h`}</dd>
      </div>
      <div>
        <dt>Change over the period</dt>
        <dd>{trend.change === null ? "–" : formatValue(trend.change, u)}</dd>
      </div>
      <div>
        <dt>Last hour</dt>
        <dd>{trend.trend1h?.trend ?? "–"}</dd>
      </div>
      <div>
        <dt>Last 24 hours</dt>
        <dd>{trend.trend24h?.trend ?? "–"}</dd>
      </div>
    </dl>
  );
}

function useTrend(deviceId: string, hours: number) {
  return useAnalyticsDeviceTrendQuery({ deviceId, hours }, { skip: !deviceId, pollingInterval: SUMMARY_POLL_MS });
}

export function DeviceTrendChart({ hours }: { hours: number }) {
  const summary = useAnalyticsSummaryQuery(hours, { pollingInterval: SUMMARY_POLL_MS });
  const devices = summary.data?.devices ?? [];
  const [picked, setPicked] = useState<string[]>([]);
  // Until the user picks: the first device.
  const first = devices[0]?.deviceId ?? "";
  const [a = first, b = "", c = ""] = picked.length ? picked : [first];
  const ta = useTrend(a, hours);
  const tb = useTrend(b, hours);
  const tc = useTrend(c, hours);
  const [d0, d1, d2] = [ta.data, tb.data, tc.data];
  const trends = useMemo(() => [d0, d1, d2].filter((t): t is DeviceTrend => Boolean(t)), [d0, d1, d2]);
  const error = ta.error ?? tb.error ?? tc.error;
  const data = useMemo(() => trends.flatMap((t, i) => trendTraces(t, i, trends.length === 1)), [trends]);
  const units = [...new Set(trends.map((t) => t.unit ?? ""))];
  const unitTitle = units.length === 1 ? (units[0] ?? "") : "";
  // The whole period on the x axis (a period that has begun only this hour has one point:
  // Plotly would otherwise zoom in on it, down to milliseconds).
  const from = summary.data?.from;
  const to = summary.data?.to;
  const layout = useMemo<PlotLayout>(
    () => ({
      showlegend: trends.length > 1,
      legend: { orientation: "h", x: 0, y: 1.15 },
      margin: { l: 48, r: 16, t: trends.length > 1 ? 32 : 16, b: 36 },
      xaxis: from && to ? { type: "date", range: [from, to] } : { type: "date" },
      yaxis: { title: { text: unitTitle } },
      hovermode: "x unified",
    }),
    [trends.length, unitTitle, from, to],
  );

  const choose = (slot: number, id: string) => {
    const next = [a, b, c];
    next[slot] = id;
    setPicked(next.filter((x, i) => x || i === 0));
  };

  const csvRows = trends.flatMap((t) => t.hourly.map((p) => ({ deviceId: t.deviceId, unit: t.unit, ...p })));

  return (
    <section className="panel" aria-labelledby="trend-title">
      <div className="row section-head">
        <h2 id="trend-title">{NAME}</h2>
        <span className="spacer" />
        {[a, b, c].map((value, slot) => (
          <label key={slot} className="inline">
            {slot === 0 ? "Device" : `Compare ${slot}`}
            <select value={value} onChange={(e) => choose(slot, e.target.value)}>
              {slot > 0 ? <option value="">–</option> : null}
              {devices.map((d) => (
                <option key={d.deviceId} value={d.deviceId}>
                  {d.deviceId} ({d.type})
                </option>
              ))}
            </select>
          </label>
        ))}
        <PngButton chart={NAME} disabled={!trends.some((t) => t.hourly.length)} />
        <CsvButton name="device trend" rows={csvRows} />
      </div>
      <QueryStatus error={summary.error ?? error} loading={summary.isLoading || ta.isLoading} />
      {trends.length === 1 && trends[0] ? <TrendFigures trend={trends[0]} /> : null}
      {trends.length > 1 ? (
        <ul className="trend-compare">
          {trends.map((t) => (
            <li key={t.deviceId}>
              <strong>{t.deviceId}</strong>: slope {t.slopePerHour === null ? "–" : formatValue(t.slopePerHour)}{" "}
              {t.unit ?? ""}/h, change {t.change === null ? "–" : formatValue(t.change, t.unit)}
            </li>
          ))}
        </ul>
      ) : null}
      {trends.some((t) => t.hourly.length) ? <Plot name={NAME} data={data} layout={layout} height={300} /> : null}
      {trends.length && trends.every((t) => !t.hourly.length) ? (
        <p className="muted">No readings in this period yet.</p>
      ) : null}
    </section>
  );
}
