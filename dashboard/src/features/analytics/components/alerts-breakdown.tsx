// Alerts triggered in the period, by type and by severity (from the summary).
import { useMemo } from "react";

import { Plot, type PlotData } from "@/components/plot";
import { QueryStatus } from "@/components/query-status";
import { useTheme } from "@/components/theme";
import { useAnalyticsSummaryQuery } from "@/features/analytics/api/get-analytics-summary";
import { SUMMARY_POLL_MS } from "@/features/analytics/components/device-heatmap";
import { CsvButton, PngButton } from "@/features/analytics/components/export-buttons";
import { hoursLabel } from "@/features/analytics/components/hours-picker";

const NAME = "Alerts by type and severity";
const SEVERITY_ORDER = ["critical", "high", "medium", "low"];
const SEVERITY_COLOUR: Record<string, string> = {
  critical: "#dc2626",
  high: "#ea580c",
  medium: "#d97706",
  low: "#0891b2",
};

export function AlertsBreakdown({ hours }: { hours: number }) {
  const { data, error, isLoading } = useAnalyticsSummaryQuery(hours, { pollingInterval: SUMMARY_POLL_MS });
  const traces = useMemo<PlotData>(() => {
    if (!data) return [];
    const types = Object.keys(data.alerts.byType).sort();
    const sev = SEVERITY_ORDER.filter((s) => s in data.alerts.bySeverity);
    return [
      {
        type: "bar",
        orientation: "h",
        y: types.map((t) => t.replace(/_/g, " ")),
        x: types.map((t) => data.alerts.byType[t] ?? 0),
        marker: { color: "#2563eb" },
        name: "by type",
        xaxis: "x",
        yaxis: "y",
      },
      {
        type: "bar",
        orientation: "h",
        y: sev,
        x: sev.map((s) => data.alerts.bySeverity[s] ?? 0),
        marker: { color: sev.map((s) => SEVERITY_COLOUR[s] ?? "#888") },
        name: "by severity",
        xaxis: "x2",
        yaxis: "y2",
      },
    ];
  }, [data]);
  const { dark } = useTheme();
  const layout = useMemo(() => {
    const gridcolor = dark ? "#333" : "#e5e5e5";
    return {
      grid: { rows: 1, columns: 2, pattern: "independent" as const },
      margin: { l: 120, r: 16, t: 16, b: 36 },
      xaxis2: { gridcolor },
      yaxis2: { automargin: true, gridcolor },
    };
  }, [dark]);
  const rows = data
    ? [
        ...Object.entries(data.alerts.byType).map(([k, n]) => ({ group: "type", key: k, alerts: n })),
        ...Object.entries(data.alerts.bySeverity).map(([k, n]) => ({ group: "severity", key: k, alerts: n })),
      ]
    : [];
  return (
    <section className="panel" aria-labelledby="alerts-breakdown-title">
      <div className="row section-head">
        <h2 id="alerts-breakdown-title">
          {NAME}, last {hoursLabel(hours)}
        </h2>
        <span className="spacer" />
        {data ? <span className="muted">{data.alerts.total} alerts</span> : null}
        <PngButton chart={NAME} disabled={!data?.alerts.total} />
        <CsvButton name="alerts breakdown" rows={rows} />
      </div>
      <QueryStatus error={error} loading={isLoading} />
      {data && data.alerts.total > 0 ? <Plot name={NAME} data={traces} layout={layout} height={240} /> : null}
      {data && data.alerts.total === 0 ? <p className="muted">No alerts in this period.</p> : null}
    </section>
  );
}
