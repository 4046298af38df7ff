// One alert in a modal dialog: its fields, every transition (who, when, note), and for
// operators Acknowledge/Resolve with an optional note. Opened by ?alert=<id>.
import { useState } from "react";
import { Link } from "react-router-dom";

import { useAlertDetailsQuery } from "@/features/alerts/api/get-alert";
import { AlertActions, useCanAct } from "@/features/alerts/components/alert-actions";
import { SeverityBadge, StatusText } from "@/features/alerts/components/alert-badges";
import { Dialog } from "@/features/alerts/components/dialog";
import { useAlertParam } from "@/features/alerts/hooks/use-alert-param";
import { FLAPPING_HINT, typeLabel } from "@/features/alerts/types";
import { errorMessage } from "@/lib/api-client";
import { formatTime, formatValue } from "@/utils/format";

import "@/features/alerts/alerts.css";

export function AlertDetailDialog({ alertId, onClose }: { alertId: number; onClose: () => void }) {
  const { data: alert, error, isLoading } = useAlertDetailsQuery(alertId);
  const actions = useCanAct();
  const [note, setNote] = useState("");
  return (
    <Dialog title={`Alert #${alertId}`} onClose={onClose}>
      {isLoading ? <p>Loading…</p> : null}
      {error ? (
        <p role="alert" className="error-text">
          {errorMessage(error)}
        </p>
      ) : null}
      {alert ? (
        <>
          <p className="alert-detail-message">
            <SeverityBadge severity={alert.severity} /> {alert.message}
          </p>
          <dl className="alert-detail-fields">
            <dt>Status</dt>
            <dd data-testid="alert-detail-status">
              <StatusText status={alert.status} />
              {alert.silenced ? " (silenced)" : ""}
              {alert.flapping ? (
                <span data-testid="alert-detail-flapping" title={FLAPPING_HINT}>
                  {" "}
                  (flapping: notifications held until it settles)
                </span>
              ) : null}
            </dd>
            <dt>Device</dt>
            <dd>
              <Link to={`/devices/${encodeURIComponent(alert.deviceId)}`}>{alert.deviceId}</Link>
            </dd>
            <dt>Type</dt>
            <dd>{typeLabel(alert.type)}</dd>
            <dt>Value / threshold</dt>
            <dd>
              {formatValue(alert.value)} / {formatValue(alert.threshold)} (last{" "}
              {formatValue(alert.lastValue)}, seen {alert.count}×)
            </dd>
            <dt>Triggered</dt>
            <dd>{formatTime(alert.triggeredAt)}</dd>
            <dt>Last seen</dt>
            <dd>{formatTime(alert.lastSeenAt)}</dd>
            {alert.acknowledgedAt ? (
              <>
                <dt>Acknowledged</dt>
                <dd>
                  {formatTime(alert.acknowledgedAt)} by {alert.acknowledgedBy ?? "–"}
                </dd>
              </>
            ) : null}
            {alert.escalatedAt ? (
              <>
                <dt>Escalated</dt>
                <dd>{formatTime(alert.escalatedAt)}</dd>
              </>
            ) : null}
            {alert.resolvedAt ? (
              <>
                <dt>Resolved</dt>
                <dd>
                  {formatTime(alert.resolvedAt)} by {alert.resolvedBy ?? "–"}
                </dd>
              </>
            ) : null}
          </dl>
          <h3>History</h3>
          <ol className="transitions">
            {alert.transitions.map((t, i) => (
              <li key={`${t.at}-${i}`}>
                <time dateTime={t.at}>{formatTime(t.at)}</time>{" "}
                <span>
                  {t.from ? `${t.from} → ` : ""}
                  <strong>{t.to}</strong>
                </span>{" "}
                <span className="muted">by {t.actor}</span>
                {t.note ? <q className="transition-note">{t.note}</q> : null}
              </li>
            ))}
          </ol>
          {actions && alert.status !== "resolved" ? (
            <div className="alert-detail-actions">
              <label>
                Note (optional)
                <textarea
                  value={note}
                  maxLength={500}
                  rows={2}
                  onChange={(e) => setNote(e.target.value)}
                />
              </label>
              <AlertActions alert={alert} note={note} />
            </div>
          ) : null}
        </>
      ) : null}
    </Dialog>
  );
}

/** The dialog for ?alert=<id>, if any. */
export function AlertDetailFromUrl() {
  const [id, , close] = useAlertParam();
  return id === null ? null : <AlertDetailDialog key={id} alertId={id} onClose={close} />;
}
