import "@/features/devices/devices.css";

import { useMemo } from "react";

import { Plot, type PlotData, type PlotLayout } from "@/components/plot";
import { useTheme } from "@/components/theme";
import { useLiveSeries } from "@/features/devices/hooks/use-live-series";
import { DEFAULT_INTERVAL_MS } from "@/features/devices/utils/readings";
import { stateAxis } from "@/features/devices/utils/states";
import { thresholdShapes } from "@/features/devices/utils/thresholds";
import { env } from "@/config/env";
import type { Thresholds } from "@/types/api";

interface Props {
  deviceId: string;
  unit: string | null;
  thresholds: Thresholds;
  /** The sensor type: a state (door, siren...) is drawn as steps between its two labels. */
  type?: string;
  /** The device's nominal reporting interval: how far back the recent readings are asked for. */
  intervalMs?: number;
}

/** The last env.livePoints readings, the recent ones from the API at once, then live ones as
 * they come, redrawn in place (at most once a frame). */
export function LiveChart({ deviceId, unit, thresholds, type, intervalMs = DEFAULT_INTERVAL_MS }: Props) {
  const { points, loading } = useLiveSeries(deviceId, intervalMs);
  const { dark } = useTheme();
  const state = useMemo(() => stateAxis(type), [type]);
  const data = useMemo<PlotData>(
    () => [
      {
        type: "scatter",
        mode: points.length < 60 ? "lines+markers" : "lines",
        x: points.map((p) => new Date(p.t)),
        y: points.map((p) => p.v),
        line: { color: dark ? "#60a5fa" : "#2563eb", width: 1.5, ...state?.line },
        marker: { size: 4 },
        hovertemplate: `%{y:.2f}${unit ? ` ${unit}` : ""}<br>%{x|%H:%M:%S}<extra></extra>`,
      },
    ],
    [points, unit, dark, state],
  );
  const { normalMin, normalMax, alertMin, alertMax } = thresholds;
  const layout = useMemo<PlotLayout>(
    () => ({
      ...thresholdShapes({ normalMin, normalMax, alertMin, alertMax }),
      uirevision: deviceId, // a zoom stays while new points arrive
      xaxis: { type: "date" },
      yaxis: { title: { text: unit ?? "" }, zeroline: false, ...state?.yaxis },
    }),
    [deviceId, unit, normalMin, normalMax, alertMin, alertMax, state],
  );
  return (
    <section className="panel chart-panel" aria-labelledby={`live-${deviceId}`}>
      <div className="dv-head">
        <h2 id={`live-${deviceId}`}>Live</h2>
        <span className="muted small">
          last {points.length} of {env.livePoints} points
        </span>
      </div>
      <div
        className="live-chart"
        data-testid="live-chart"
        data-points={points.length}
        data-last={points.at(-1)?.t}
      >
        <Plot data={data} layout={layout} name={`${deviceId} live`} height={260} />
        {points.length === 0 ? (
          <p className="chart-empty muted">{loading ? "Loading the recent readings…" : "Waiting for live data…"}</p>
        ) : null}
      </div>
    </section>
  );
}
