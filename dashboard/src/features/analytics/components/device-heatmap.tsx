// The summary's device x hour heatmap, with PNG and CSV export.
import { QueryStatus } from "@/components/query-status";
import { useAnalyticsSummaryQuery } from "@/features/analytics/api/get-analytics-summary";
import { CsvButton, fileName } from "@/features/analytics/components/export-buttons";
import { Heatmap } from "@/features/analytics/components/heatmap";
import { hoursLabel } from "@/features/analytics/components/hours-picker";
import { downloadHeatmapPng, heatmapCsvRows } from "@/features/analytics/utils/heatmap-png";
import { useTheme } from "@/components/theme";

import "@/features/analytics/analytics.css";

export const SUMMARY_POLL_MS = 60_000;

export function DeviceHeatmap({ hours }: { hours: number }) {
  const { data, error, isLoading } = useAnalyticsSummaryQuery(hours, { pollingInterval: SUMMARY_POLL_MS });
  const { dark } = useTheme();
  const title = `Hourly averages by device, last ${hoursLabel(hours)}`;
  const units = Object.fromEntries((data?.devices ?? []).map((d) => [d.deviceId, d.unit]));
  return (
    <section className="panel" aria-labelledby="heatmap-title">
      <div className="row section-head">
        <h2 id="heatmap-title">{title}</h2>
        <span className="spacer" />
        <button
          type="button"
          className="secondary"
          disabled={!data?.heatmap.devices.length}
          aria-label="Export the heatmap as PNG"
          onClick={() => data && downloadHeatmapPng(data.heatmap, fileName("heatmap", "png").slice(0, -4), dark)}
        >
          PNG
        </button>
        <CsvButton name="heatmap" rows={data ? heatmapCsvRows(data.heatmap) : []} />
      </div>
      <QueryStatus error={error} loading={isLoading} />
      {data ? <Heatmap data={data.heatmap} units={units} caption={title} /> : null}
      {data && data.devices.length > data.heatmap.devices.length && data.heatmap.devices.length >= 100 ? (
        <p className="muted">The first 100 devices are shown.</p>
      ) : null}
    </section>
  );
}
