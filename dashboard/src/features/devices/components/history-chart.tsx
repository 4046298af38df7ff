import "@/features/devices/devices.css";

import { useCallback, useMemo, useState, type FormEvent, type MouseEvent } from "react";
import toast from "react-hot-toast";
import { useSelector } from "react-redux";

import { downloadPng, Plot, type PlotData, type PlotLayout } from "@/components/plot";
import { useTheme } from "@/components/theme";
import { env } from "@/config/env";
import { useGetDeviceHistoryQuery } from "@/features/devices/api/get-device-history";
import { stateAxis } from "@/features/devices/utils/states";
import { thresholdShapes } from "@/features/devices/utils/thresholds";
import { fromLocalInput, fromPlotTime, toLocalInput } from "@/features/devices/utils/time";
import { errorMessage } from "@/lib/api-client";
import { selectSession } from "@/lib/session";
import type { Thresholds } from "@/types/api";
import { downloadText } from "@/utils/csv";
import { formatTime } from "@/utils/format";

const HOUR = 3_600_000;
export const PRESETS = [
  { key: "1h", label: "1 h", span: HOUR },
  { key: "6h", label: "6 h", span: 6 * HOUR },
  { key: "24h", label: "24 h", span: 24 * HOUR },
  { key: "7d", label: "7 d", span: 7 * 24 * HOUR },
] as const;
type PresetKey = (typeof PRESETS)[number]["key"] | "custom";

/** How many points (raw, or buckets) a view asks for. */
export const HISTORY_POINTS = 500;

interface Range {
  from: number;
  to: number;
}

/** The last ``span`` ms up to now. */
function lastSpan(span: number): Range {
  const now = Date.now();
  return { from: now - span, to: now };
}

const iso = (ms: number) => new Date(Math.floor(ms / 1000) * 1000).toISOString();

function sameRange(a: Range, b: Range): boolean {
  const tolerance = Math.max(1000, (a.to - a.from) / 1000);
  return Math.abs(a.from - b.from) <= tolerance && Math.abs(a.to - b.to) <= tolerance;
}

/** The new x range of a Plotly relayout event; "reset" on a double click (autorange). */
export function relayoutRange(e: Record<string, unknown>): Range | "reset" | null {
  if (e["xaxis.autorange"] === true) return "reset";
  const arr = e["xaxis.range"];
  const r0 = e["xaxis.range[0]"] ?? (Array.isArray(arr) ? arr[0] : undefined);
  const r1 = e["xaxis.range[1]"] ?? (Array.isArray(arr) ? arr[1] : undefined);
  const from = fromPlotTime(r0);
  const to = fromPlotTime(r1);
  if (from === null || to === null || to - from < 1000) return null;
  return { from, to };
}

interface Props {
  deviceId: string;
  unit: string | null;
  thresholds: Thresholds;
  /** The sensor type: a state (door, siren...) is drawn as steps between its two labels. */
  type?: string;
}

export function HistoryChart({ deviceId, unit, thresholds, type }: Props) {
  const { dark } = useTheme();
  const session = useSelector(selectSession);
  const [preset, setPreset] = useState<PresetKey>("1h");
  const [base, setBase] = useState<Range>(() => lastSpan(HOUR));
  const [zoom, setZoom] = useState<Range | null>(null);
  const [custom, setCustom] = useState({ from: "", to: "" });
  const [customError, setCustomError] = useState<string | null>(null);
  const range = zoom ?? base;
  const args = { deviceId, from: iso(range.from), to: iso(range.to), limit: HISTORY_POINTS };
  const { data, error, isFetching } = useGetDeviceHistoryQuery(args);

  function choose(key: PresetKey, span: number) {
    setPreset(key);
    setBase(lastSpan(span));
    setZoom(null);
  }

  function applyCustom(e: FormEvent) {
    e.preventDefault();
    const from = fromLocalInput(custom.from);
    const to = fromLocalInput(custom.to);
    if (from === null || to === null) return setCustomError("Give both times.");
    if (from >= to) return setCustomError("From must be before to.");
    setCustomError(null);
    setPreset("custom");
    setBase({ from, to });
    setZoom(null);
  }

  const onRelayout = useCallback((event: unknown) => {
    const r = relayoutRange(event as Record<string, unknown>);
    if (r === "reset") setZoom(null);
    else if (r) setZoom((prev) => (prev && sameRange(prev, r) ? prev : r));
  }, []);

  const color = dark ? "#60a5fa" : "#2563eb";
  const points = data?.points;
  const downsampled = data?.downsampled ?? false;
  const state = useMemo(() => stateAxis(type), [type]);
  const plotData = useMemo<PlotData>(() => {
    if (!points) return [];
    const x = points.map((p) => new Date(p.timestamp));
    const u = unit ? ` ${unit}` : "";
    if (!downsampled) {
      return [
        {
          type: "scatter",
          mode: points.length < 80 ? "lines+markers" : "lines",
          x,
          y: points.map((p) => p.value),
          line: { color, width: 1.5, ...state?.line },
          marker: { size: 4 },
          hovertemplate: `%{y:.2f}${u}<br>%{x|%Y-%m-%d %H:%M:%S}<extra></extra>`,
        },
      ];
    }
    const band = dark ? "rgba(96,165,250,0.22)" : "rgba(37,99,235,0.15)";
    return [
      { type: "scatter", mode: "lines", x, y: points.map((p) => p.min), line: { width: 0 }, hoverinfo: "skip" },
      {
        type: "scatter",
        mode: "lines",
        x,
        y: points.map((p) => p.max),
        line: { width: 0 },
        fill: "tonexty",
        fillcolor: band,
        hoverinfo: "skip",
      },
      {
        type: "scatter",
        mode: "lines",
        x,
        y: points.map((p) => p.value),
        customdata: points.map((p) => [p.min, p.max, p.count]),
        line: { color, width: 1.5 },
        hovertemplate:
          `avg %{y:.2f}${u}<br>min %{customdata[0]:.2f} · max %{customdata[1]:.2f}` +
          `<br>%{customdata[2]} readings<br>%{x|%Y-%m-%d %H:%M:%S}<extra></extra>`,
      },
    ];
  }, [points, downsampled, unit, color, dark, state]);

  const { normalMin, normalMax, alertMin, alertMax } = thresholds;
  const layout = useMemo<PlotLayout>(
    () => ({
      ...thresholdShapes({ normalMin, normalMax, alertMin, alertMax }),
      // Never an explicit range: a double click resets to the first layout Plotly drew (an
      // autorange, "xaxis.autorange" for us); an explicit one would come back as a zoom.
      xaxis: { type: "date", autorange: true },
      yaxis: { title: { text: unit ?? "" }, zeroline: false, ...state?.yaxis },
    }),
    [unit, normalMin, normalMax, alertMin, alertMax, state],
  );

  const name = `${deviceId} history`;
  const csvUrl =
    `${env.apiBase}/api/devices/${encodeURIComponent(deviceId)}/history.csv` +
    `?from=${encodeURIComponent(args.from)}&to=${encodeURIComponent(args.to)}`;

  async function downloadCsv(e: MouseEvent) {
    e.preventDefault();
    try {
      const res = await fetch(csvUrl, {
        headers: session ? { Authorization: `Bearer ${session.token}` } : {},
      });
      if (!res.ok) {
        const body = (await res.json().catch(() => null)) as { error?: { message?: string } } | null;
        throw new Error(body?.error?.message ?? `request failed (${res.status})`);
      }
      const text = await res.text();
      const disposition = res.headers.get("Content-Disposition") ?? "";
      const file = /filename="?([^";]+)"?/.exec(disposition)?.[1] ?? `${deviceId}_history.csv`;
      downloadText(text, file);
    } catch (err) {
      toast.error(`CSV export failed: ${err instanceof Error ? err.message : String(err)}`);
    }
  }

  return (
    <section className="panel chart-panel" aria-labelledby={`history-${deviceId}`}>
      <div className="dv-head">
        <h2 id={`history-${deviceId}`}>History</h2>
        <div className="dv-actions" role="group" aria-label="Range">
          {PRESETS.map((p) => (
            <button
              key={p.key}
              type="button"
              className={preset === p.key && !zoom ? "" : "secondary"}
              aria-pressed={preset === p.key}
              onClick={() => choose(p.key, p.span)}
            >
              {p.label}
            </button>
          ))}
          <button type="button" className="secondary" onClick={() => void downloadPng(name)}>
            PNG
          </button>
          <a className="button-link" href={csvUrl} onClick={downloadCsv} download>
            CSV
          </a>
        </div>
      </div>
      <form className="dv-actions custom-range" onSubmit={applyCustom} aria-label="Custom range">
        <label>
          From{" "}
          <input
            type="datetime-local"
            value={custom.from || toLocalInput(range.from)}
            onChange={(e) => setCustom((c) => ({ ...c, from: e.target.value }))}
          />
        </label>
        <label>
          To{" "}
          <input
            type="datetime-local"
            value={custom.to || toLocalInput(range.to)}
            onChange={(e) => setCustom((c) => ({ ...c, to: e.target.value }))}
          />
        </label>
        <button type="submit" className={preset === "custom" ? "" : "secondary"}>
          Custom
        </button>
        {customError ? (
          <span role="alert" className="error-text">
            {customError}
          </span>
        ) : null}
      </form>
      <p className="muted small history-info" aria-live="polite">
        {formatTime(new Date(range.from).toISOString())} → {formatTime(new Date(range.to).toISOString())}
        {zoom ? (
          <>
            {" "}
            (zoomed){" "}
            <button type="button" className="link" onClick={() => setZoom(null)}>
              reset zoom
            </button>
          </>
        ) : null}
        {data
          ? ` · ${data.points.length} ${
              data.downsampled ? `buckets of ${Math.round(data.bucketSeconds ?? 0)} s (avg, min–max band)` : "readings"
            }`
          : ""}
        {isFetching ? " · loading…" : ""}
      </p>
      {error ? (
        <p role="alert" className="error-text">
          History could not be loaded: {errorMessage(error)}
        </p>
      ) : null}
      <div className="history-chart" data-testid="history-chart" data-points={points?.length ?? 0}>
        <Plot data={plotData} layout={layout} name={name} height={300} onRelayout={onRelayout} />
        {points && points.length === 0 ? <p className="chart-empty muted">No readings in this range.</p> : null}
      </div>
    </section>
  );
}
