// For the overview: open alerts by severity and the latest few, linking to the alerts page.
import { Link } from "react-router-dom";

import { QueryStatus } from "@/components/query-status";
import { useAlertsListQuery } from "@/features/alerts/api/get-alerts";
import { SeverityBadge, StatusText } from "@/features/alerts/components/alert-badges";
import { useAlertLiveSync } from "@/features/alerts/hooks/use-alert-live-sync";
import { SEVERITIES } from "@/features/alerts/types";
import { ago, formatTime } from "@/utils/format";

import "@/features/alerts/alerts.css";

const LATEST = 5;

export function ActiveAlertsSummary() {
  useAlertLiveSync();
  const { data, error, isLoading } = useAlertsListQuery({ status: "open", limit: LATEST });
  const total = data?.meta.totalAlerts ?? 0;
  // A live alert-resolved event marks the row at once; the refetch then drops it.
  const open = data?.alerts.filter((a) => a.status !== "resolved") ?? [];
  return (
    <section className="panel active-alerts" aria-labelledby="active-alerts-title">
      <div className="row section-head">
        <h2 id="active-alerts-title">
          <Link to="/alerts?status=open">Active alerts</Link>
        </h2>
        <span className="active-total" aria-label={`${total} open alerts`}>
          {data ? total : "–"}
        </span>
      </div>
      <QueryStatus error={error} loading={isLoading} />
      {data ? (
        <>
          <ul className="severity-counts" aria-label="Open alerts by severity">
            {SEVERITIES.map((s) => (
              <li key={s} className={`sev-count sev-bg-${s}`}>
                <Link to={`/alerts?status=open&severity=${s}`}>
                  <span className="sev-count-n">{data.meta[`${s}Alerts`]}</span> {s}
                </Link>
              </li>
            ))}
          </ul>
          {open.length === 0 ? (
            <p className="muted">No open alerts.</p>
          ) : (
            <ul className="latest-alerts" aria-label="Latest open alerts">
              {open.map((a) => (
                <li key={a.id} data-latest-alert-id={a.id}>
                  <SeverityBadge severity={a.severity} />{" "}
                  <Link to={`/alerts?alert=${a.id}`}>{a.message}</Link>{" "}
                  <span className="muted">
                    {a.deviceId} · <StatusText status={a.status} /> ·{" "}
                    <time dateTime={a.triggeredAt} title={formatTime(a.triggeredAt)}>
                      {ago(a.triggeredAt)}
                    </time>
                  </span>
                </li>
              ))}
            </ul>
          )}
          <Link to="/alerts" className="more">
            All alerts →
          </Link>
        </>
      ) : null}
    </section>
  );
}
