import "@/features/system/system.css";

import { useEffect, useRef } from "react";
import { useSelector } from "react-redux";

import { useGetDashboardMetricsQuery } from "@/features/system/api/get-dashboard-metrics";
import { errorMessage } from "@/lib/api-client";
import { selectConnection, selectSystem } from "@/lib/live/slice";
import type { Severity } from "@/types/api";

const POLL_MS = 10_000;
/** system-status comes about once a second: refetch the alert split at most this often. */
const MIN_REFETCH_MS = 10_000;
const SEVERITIES: Severity[] = ["critical", "high", "medium", "low"];

/** Devices active / total, readings in the last hour, open alerts by severity. */
export function KeyFigures() {
  const system = useSelector(selectSystem);
  const live = useSelector(selectConnection) === "connected" && system !== null;
  // Polled while there is no live system-status; refreshed by it when there is.
  const { data, error, isLoading, refetch, fulfilledTimeStamp } = useGetDashboardMetricsQuery(undefined, {
    pollingInterval: live ? 0 : POLL_MS,
  });
  const lastFetch = useRef(0);
  useEffect(() => {
    lastFetch.current = fulfilledTimeStamp ?? 0;
  }, [fulfilledTimeStamp]);
  useEffect(() => {
    if (!system) return;
    const since = Date.now() - lastFetch.current;
    if (since >= MIN_REFETCH_MS) {
      void refetch();
      return;
    }
    const timer = setTimeout(() => void refetch(), MIN_REFETCH_MS - since);
    return () => clearTimeout(timer);
  }, [system, refetch]);

  // The live event is newer than the last answer: its counts win.
  const liveNewer =
    system !== null && (!data?.updatedAt || Date.parse(system.timestamp) > Date.parse(data.updatedAt));
  const total = liveNewer ? system.totalDevices : data?.totalDevices;
  const active = liveNewer ? system.activeDevices : data?.activeDevices;
  const readings = liveNewer ? system.dataPointsLastHour : data?.dataPointsLastHour;
  const alerts = liveNewer ? system.activeAlertsCount : data?.activeAlerts;

  return (
    <section className="panel key-figures" aria-labelledby="key-figures-heading">
      <h2 id="key-figures-heading">Key figures</h2>
      {error && !data ? (
        <p role="alert" className="error-text">
          Figures could not be loaded: {errorMessage(error)}
        </p>
      ) : null}
      <dl className="kf-figures" aria-busy={isLoading || undefined}>
        <div className="kf-figure">
          <dt>Devices active</dt>
          <dd data-testid="figure-devices">
            <strong>{active ?? "–"}</strong>
            <span className="muted"> / {total ?? "–"}</span>
          </dd>
        </div>
        <div className="kf-figure">
          <dt>Readings, last hour</dt>
          <dd data-testid="figure-readings">
            <strong>{readings !== undefined ? readings.toLocaleString("en-US") : "–"}</strong>
          </dd>
        </div>
        <div className="kf-figure">
          <dt>Active alerts</dt>
          <dd data-testid="figure-alerts">
            <strong className={alerts ? "sev-high" : undefined}>{alerts ?? "–"}</strong>
            {data ? (
              <span className="by-severity">
                {SEVERITIES.map((s) => (
                  <span key={s} className={`sev sev-${s}`} title={`${s}: ${data.alertsBySeverity[s] ?? 0}`}>
                    {s} {data.alertsBySeverity[s] ?? 0}
                  </span>
                ))}
              </span>
            ) : null}
          </dd>
        </div>
      </dl>
    </section>
  );
}
