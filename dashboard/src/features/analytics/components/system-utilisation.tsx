// System utilisation (GET /api/metrics/system, every 10 s): this web process (uptime, memory,
// CPU), the host's load, Redis (memory, clients, operations) and PostgreSQL (size,
// connections), with the samples taken while the page is open drawn over time.
import { useMemo, useState } from "react";

import { Plot, type PlotData, type PlotLayout } from "@/components/plot";
import { QueryStatus } from "@/components/query-status";
import { useAnalyticsSystemMetricsQuery } from "@/features/analytics/api/get-system-metrics";
import { CsvButton, PngButton } from "@/features/analytics/components/export-buttons";
import type { SystemMetrics } from "@/features/analytics/types";

import "@/features/analytics/analytics.css";

export const SYSTEM_POLL_MS = 10_000;
const MAX_SAMPLES = 360; // an hour at 10 s
const NAME = "System utilisation over time";

export interface Sample {
  at: string;
  load1: number | null;
  processCpuPct: number | null; // of one core, between two samples of the same process
  rssMiB: number;
  redisOps: number | null;
  redisMiB: number | null;
  dbConnections: number;
}

export function sampleOf(m: SystemMetrics, previous: { m: SystemMetrics; t: number } | null, t: number): Sample {
  const cpu = m.process.cpuUserS + m.process.cpuSystemS;
  let pct: number | null = null;
  if (previous && previous.m.process.pid === m.process.pid && t > previous.t) {
    const before = previous.m.process.cpuUserS + previous.m.process.cpuSystemS;
    pct = Math.max(0, ((cpu - before) / ((t - previous.t) / 1000)) * 100);
  }
  const redis = "error" in m.redis ? null : m.redis;
  return {
    at: new Date(t).toISOString(),
    load1: m.host.loadAverage[0] ?? null,
    processCpuPct: pct,
    rssMiB: m.process.maxRssMiB,
    redisOps: redis?.opsPerSecond ?? null,
    redisMiB: redis?.usedMemoryMiB ?? null,
    dbConnections: m.database.connections,
  };
}

export function figures(m: SystemMetrics): { group: string; name: string; value: string }[] {
  const redis = "error" in m.redis ? null : m.redis;
  const cpus = m.host.cpus ?? null;
  const load = m.host.loadAverage;
  return [
    { group: "Web process", name: "Uptime", value: uptime(m.process.uptimeS) },
    { group: "Web process", name: "Peak memory (RSS)", value: `${m.process.maxRssMiB.toFixed(1)} MiB` },
    {
      group: "Web process",
      name: "CPU time (user / system)",
      value: `${m.process.cpuUserS.toFixed(1)} s / ${m.process.cpuSystemS.toFixed(1)} s`,
    },
    {
      group: "Host",
      name: "Load (1 / 5 / 15 min)",
      value: load.map((l) => l.toFixed(2)).join(" / ") + (cpus ? ` on ${cpus} CPUs` : ""),
    },
    ...(redis
      ? [
          { group: "Redis", name: "Memory", value: `${redis.usedMemoryMiB.toFixed(1)} MiB` },
          { group: "Redis", name: "Clients", value: String(redis.connectedClients) },
          { group: "Redis", name: "Operations / s", value: String(redis.opsPerSecond) },
          { group: "Redis", name: "Version", value: redis.version ?? "–" },
        ]
      : [{ group: "Redis", name: "Error", value: "error" in m.redis ? m.redis.error : "" }]),
    { group: "PostgreSQL", name: "Database size", value: `${m.database.sizeMiB.toFixed(1)} MiB` },
    { group: "PostgreSQL", name: "Connections", value: String(m.database.connections) },
    { group: "PostgreSQL", name: "Version", value: m.database.version },
  ];
}

function uptime(s: number): string {
  const d = Math.floor(s / 86400);
  const h = Math.floor((s % 86400) / 3600);
  const m = Math.floor((s % 3600) / 60);
  return d ? `${d} d ${h} h` : h ? `${h} h ${m} min` : `${m} min ${Math.floor(s % 60)} s`;
}

function Meter({ label, value, max }: { label: string; value: number; max: number }) {
  const pct = Math.min(100, (value / max) * 100);
  return (
    <div className="meter">
      <span>{label}</span>
      <meter min={0} max={max} low={max * 0.7} high={max * 0.9} optimum={0} value={value} aria-label={label}>
        {pct.toFixed(0)} %
      </meter>
      <span className="muted">{pct.toFixed(0)} %</span>
    </div>
  );
}

export function SystemUtilisation() {
  const { data, error, isLoading, fulfilledTimeStamp } = useAnalyticsSystemMetricsQuery(undefined, {
    pollingInterval: SYSTEM_POLL_MS,
  });
  const [samples, setSamples] = useState<Sample[]>([]);
  const [last, setLast] = useState<{ m: SystemMetrics; t: number } | null>(null);
  if (data && fulfilledTimeStamp && last?.t !== fulfilledTimeStamp) {
    setLast({ m: data, t: fulfilledTimeStamp });
    setSamples((s) => [...s, sampleOf(data, last, fulfilledTimeStamp)].slice(-MAX_SAMPLES));
  }

  const plot = useMemo<PlotData>(() => {
    const x = samples.map((s) => s.at);
    return [
      { type: "scatter", mode: "lines", x, y: samples.map((s) => s.load1), name: "host load (1 min)" },
      { type: "scatter", mode: "lines", x, y: samples.map((s) => s.processCpuPct), name: "web process CPU %", yaxis: "y2" },
      { type: "scatter", mode: "lines", x, y: samples.map((s) => s.redisOps), name: "Redis ops/s", yaxis: "y2", line: { dash: "dot" } },
    ];
  }, [samples]);
  const layout = useMemo<PlotLayout>(
    () => ({
      showlegend: true,
      legend: { orientation: "h", x: 0, y: 1.18 },
      yaxis: { title: { text: "load" }, rangemode: "tozero" },
      yaxis2: { title: { text: "% / ops per s" }, overlaying: "y", side: "right", rangemode: "tozero", showgrid: false },
      margin: { l: 48, r: 56, t: 32, b: 36 },
    }),
    [],
  );
  const list = data ? figures(data) : [];
  const groups = [...new Set(list.map((f) => f.group))];

  return (
    <section className="panel" aria-labelledby="system-title">
      <div className="row section-head">
        <h2 id="system-title">System utilisation</h2>
        {data ? <span className="muted">iotmon {data.version}</span> : null}
        <span className="spacer" />
        <CsvButton name="system figures" rows={list} />
      </div>
      <QueryStatus error={error} loading={isLoading} />
      {data ? (
        <>
          {data.host.cpus && data.host.loadAverage[0] !== undefined ? (
            <Meter label="Host load (1 min) per CPU" value={data.host.loadAverage[0]} max={data.host.cpus} />
          ) : null}
          <div className="figure-groups">
            {groups.map((g) => (
              <div key={g} className="figure-group">
                <h3>{g}</h3>
                <dl aria-label={g}>
                  {list
                    .filter((f) => f.group === g)
                    .map((f) => (
                      <div key={f.name}>
                        <dt>{f.name}</dt>
                        <dd>{f.value}</dd>
                      </div>
                    ))}
                </dl>
              </div>
            ))}
          </div>
          <div className="row section-head">
            <h3>{NAME}</h3>
            <span className="muted">one sample every {SYSTEM_POLL_MS / 1000} s while this page is open</span>
            <span className="spacer" />
            <PngButton chart={NAME} disabled={samples.length < 2} />
            <CsvButton name="system samples" rows={samples as unknown as Record<string, unknown>[]} />
          </div>
          {samples.length >= 2 ? (
            <Plot name={NAME} data={plot} layout={layout} height={220} />
          ) : (
            <p className="muted">Collecting samples…</p>
          )}
        </>
      ) : null}
    </section>
  );
}
