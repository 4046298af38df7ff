// Alerts triggered per day over the last 7 days, by severity (GET /api/alerts/history, the
// newest 500; the chart says when there were more).
import { format } from "date-fns";
import { useMemo } from "react";

import { downloadPng, Plot, type PlotData } from "@/components/plot";
import { QueryStatus } from "@/components/query-status";
import { useAlertHistoryQuery } from "@/features/alerts/api/get-alert-history";
import { SEVERITIES, SEVERITY_COLOUR } from "@/features/alerts/types";
import type { Alert } from "@/types/api";

const NAME = "Alerts per day, last 7 days";
const LIMIT = 500;

export function dailyCounts(alerts: Alert[], days: string[]): PlotData {
  return SEVERITIES.map((severity) => {
    const counts = new Map(days.map((d) => [d, 0]));
    for (const a of alerts) {
      if (a.severity !== severity) continue;
      const day = format(new Date(a.triggeredAt), "yyyy-MM-dd");
      if (counts.has(day)) counts.set(day, (counts.get(day) ?? 0) + 1);
    }
    return {
      type: "bar" as const,
      name: severity,
      x: days,
      y: days.map((d) => counts.get(d) ?? 0),
      marker: { color: SEVERITY_COLOUR[severity] },
    };
  });
}

export function AlertHistoryChart() {
  const { data, error, isLoading } = useAlertHistoryQuery({ limit: LIMIT }, { pollingInterval: 60_000 });
  const traces = useMemo(() => {
    if (!data) return [];
    const today = new Date();
    const days = Array.from({ length: 7 }, (_, i) =>
      format(new Date(today.getTime() - (6 - i) * 86400_000), "yyyy-MM-dd"),
    );
    const labels = days.map((d) => format(new Date(`${d}T12:00:00`), "EEE d MMM"));
    return dailyCounts(data.alerts, days).map((t) => ({ ...t, x: labels }));
  }, [data]);
  // Counts: whole-number ticks.
  const perDay = (traces[0]?.x as string[] | undefined)?.map((_, day) =>
    traces.reduce((sum, t) => sum + Number((t.y as number[])[day] ?? 0), 0),
  );
  const most = Math.max(0, ...(perDay ?? []));
  const layout = useMemo(
    () => ({
      barmode: "stack" as const,
      showlegend: true,
      legend: { orientation: "h" as const, x: 0, y: 1.12 },
      margin: { l: 40, r: 16, t: 28, b: 36 },
      xaxis: { type: "category" as const },
      yaxis: { rangemode: "tozero" as const, tickformat: "d", ...(most <= 10 ? { dtick: 1 } : {}) },
    }),
    [most],
  );
  return (
    <section className="panel" aria-labelledby="alert-history-title">
      <div className="row section-head">
        <h2 id="alert-history-title">{NAME}</h2>
        <span className="spacer" />
        <button type="button" className="secondary" onClick={() => void downloadPng(NAME)} disabled={!data}>
          Export PNG
        </button>
      </div>
      <QueryStatus error={error} loading={isLoading} />
      {data ? (
        <>
          <Plot name={NAME} data={traces} layout={layout} height={240} />
          {data.meta.totalAlerts > data.alerts.length ? (
            <p className="muted">
              The newest {data.alerts.length} of {data.meta.totalAlerts} alerts are counted.
            </p>
          ) : null}
        </>
      ) : null}
    </section>
  );
}
