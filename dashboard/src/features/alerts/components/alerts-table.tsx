// Alerts as a table. Contract for end-to-end tests: each row is <tr data-alert-id={id}>, its
// status cell has data-testid="alert-status" with the status text, and the buttons are named
// exactly "Acknowledge" and "Resolve" (operators and admins only). On a phone each row is a card
// (alerts.css): severity, status and device, the message, the figures, then the buttons, so that
// acknowledging needs no sideways scrolling.
import { Link } from "react-router-dom";

import { AlertActions, useCanAct } from "@/features/alerts/components/alert-actions";
import { SeverityBadge, StatusText } from "@/features/alerts/components/alert-badges";
import { FLAPPING_HINT, typeLabel } from "@/features/alerts/types";
import type { Alert } from "@/types/api";
import { ago, formatTime, formatValue } from "@/utils/format";

import "@/features/alerts/alerts.css";

export function AlertsTable({
  alerts,
  caption,
  onOpen,
  showDevice = true,
  busy = false,
}: {
  alerts: Alert[];
  caption: string;
  onOpen: (id: number) => void;
  showDevice?: boolean;
  busy?: boolean;
}) {
  const actions = useCanAct();
  return (
    <div className="table-scroll">
      <table className={`alerts-table${busy ? " stale" : ""}`} aria-busy={busy}>
        <caption className="sr-only">{caption}</caption>
        <thead>
          <tr>
            <th scope="col">Severity</th>
            <th scope="col">Status</th>
            {showDevice ? <th scope="col">Device</th> : null}
            <th scope="col">Type</th>
            <th scope="col">Message</th>
            <th scope="col">Value</th>
            <th scope="col">Triggered</th>
            <th scope="col">Count</th>
            {actions ? <th scope="col">Actions</th> : null}
          </tr>
        </thead>
        <tbody>
          {alerts.length === 0 ? (
            <tr>
              <td colSpan={7 + (showDevice ? 1 : 0) + (actions ? 1 : 0)} className="empty">
                No alerts match.
              </td>
            </tr>
          ) : null}
          {alerts.map((a) => (
            <tr key={a.id} data-alert-id={a.id} className={`alert-row alert-row-${a.status}`}>
              <td>
                <SeverityBadge severity={a.severity} />
              </td>
              <td data-testid="alert-status">
                <StatusText status={a.status} />
              </td>
              {showDevice ? (
                <td>
                  <Link to={`/devices/${encodeURIComponent(a.deviceId)}`}>{a.deviceId}</Link>
                </td>
              ) : null}
              <td data-label="Type">{typeLabel(a.type)}</td>
              <td className="alert-message">
                <button
                  type="button"
                  className="link"
                  onClick={() => onOpen(a.id)}
                  aria-haspopup="dialog"
                  title="Details and history of this alert"
                >
                  {a.message}
                </button>
                {a.silenced ? <span className="muted"> (silenced)</span> : null}
                {a.flapping ? (
                  <span className="muted" title={FLAPPING_HINT}>
                    {" "}
                    (flapping)
                  </span>
                ) : null}
              </td>
              <td data-label="Value">
                {formatValue(a.lastValue ?? a.value)}
                {a.threshold !== null ? (
                  <span className="muted"> / {formatValue(a.threshold)}</span>
                ) : null}
              </td>
              <td data-label="Triggered" title={formatTime(a.triggeredAt)}>
                {ago(a.triggeredAt)}
              </td>
              <td data-label="Count">{a.count}</td>
              {actions ? (
                <td className="alert-row-actions">
                  <AlertActions alert={a} />
                </td>
              ) : null}
            </tr>
          ))}
        </tbody>
      </table>
    </div>
  );
}

export function Pagination({
  page,
  pages,
  total,
  onPage,
  label,
  more = false,
}: {
  page: number; // 1-based
  pages: number;
  total: number;
  onPage: (page: number) => void;
  label: string;
  /** The total is a lower bound (the server counts up to 10,000): pages go on past it. */
  more?: boolean;
}) {
  return (
    <nav className="pagination row" aria-label={label}>
      <button type="button" className="secondary" disabled={page <= 1} onClick={() => onPage(page - 1)}>
        Previous
      </button>
      <span>
        Page {more ? page : Math.min(page, Math.max(pages, 1))} of {Math.max(pages, page, 1).toLocaleString()}
        {more ? "+" : ""} ({total.toLocaleString()}
        {more ? "+" : ""} alert{total === 1 && !more ? "" : "s"})
      </span>
      <button
        type="button"
        className="secondary"
        disabled={page >= pages && !more}
        onClick={() => onPage(page + 1)}
      >
        Next
      </button>
    </nav>
  );
}
