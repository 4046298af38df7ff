// Device x hour heatmap of hourly averages, drawn as an HTML table (the minimal Plotly bundle
// has no heatmap trace): every value is in the document (readable by screen readers, found
// by tests), each row coloured from its own lowest hour to its highest (units differ between
// devices), empty hours hatched. PNG export draws the same grid on a canvas.
import { format } from "date-fns";
import { useMemo } from "react";

import type { Heatmap as HeatmapData } from "@/features/analytics/types";
import { colour, extent, textColour } from "@/features/analytics/utils/stats";
import { formatValue } from "@/utils/format";

import "@/features/analytics/analytics.css";

export interface HeatmapCell {
  value: number | null;
  t: number | null; // 0..1 within its row, null without data
}

export function heatmapRows(data: HeatmapData): HeatmapCell[][] {
  return data.devices.map((_, i) => {
    const row = data.values[i] ?? [];
    const range = extent(row);
    return data.hours.map((_, j) => {
      const v = row[j] ?? null;
      if (v === null || !range) return { value: v, t: null };
      return { value: v, t: range[1] > range[0] ? (v - range[0]) / (range[1] - range[0]) : 0.5 };
    });
  });
}

export function hourLabel(iso: string, spanHours: number): string {
  return format(new Date(iso), spanHours > 24 ? "EEE HH:00" : "HH:00");
}

export function Heatmap({
  data,
  units = {},
  caption,
}: {
  data: HeatmapData;
  units?: Record<string, string | null>;
  caption: string;
}) {
  const rows = useMemo(() => heatmapRows(data), [data]);
  const dense = data.hours.length > 48;
  const labelEvery = data.hours.length > 72 ? 6 : data.hours.length > 24 ? 3 : 1;
  if (!data.devices.length) return <p className="muted">No hourly data in this period yet.</p>;
  return (
    <div className="heatmap-scroll">
      <table className={`heatmap${dense ? " dense" : ""}`}>
        <caption className="sr-only">{caption}</caption>
        <thead>
          <tr>
            <th scope="col">Device</th>
            {data.hours.map((h, j) => (
              <th key={h} scope="col" title={format(new Date(h), "yyyy-MM-dd HH:mm")}>
                <span className={j % labelEvery === 0 ? "" : "sr-only"}>
                  {hourLabel(h, data.hours.length)}
                </span>
              </th>
            ))}
          </tr>
        </thead>
        <tbody>
          {data.devices.map((device, i) => (
            <tr key={device} data-device-id={device}>
              <th scope="row">{device}</th>
              {(rows[i] ?? []).map((cell, j) => {
                const hour = data.hours[j] ?? "";
                const text = cell.value === null ? "no data" : formatValue(cell.value);
                return (
                  <td
                    key={hour}
                    className={cell.t === null ? "empty" : undefined}
                    style={
                      cell.t === null
                        ? undefined
                        : { background: colour(cell.t), color: textColour(cell.t) }
                    }
                    title={`${device}, ${format(new Date(hour), "yyyy-MM-dd HH:00")}: ${
                      cell.value === null ? "no data" : formatValue(cell.value, units[device])
                    }`}
                  >
                    <span className={dense || cell.value === null ? "sr-only" : undefined}>{text}</span>
                  </td>
                );
              })}
            </tr>
          ))}
        </tbody>
      </table>
      <p className="heatmap-legend muted">
        Hourly averages. Colour: each device from its lowest hour{" "}
        <span className="legend-swatch" style={{ background: colour(0) }} aria-hidden /> to its highest{" "}
        <span className="legend-swatch" style={{ background: colour(1) }} aria-hidden />; hatched: no data.
      </p>
    </div>
  );
}
