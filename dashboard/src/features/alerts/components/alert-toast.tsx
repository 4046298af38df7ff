import type { AlertEventName } from "@/lib/live/slice";
import type { Alert } from "@/types/api";

import "@/features/alerts/alerts.css";

const HEADING: Record<AlertEventName, string> = {
  "alert-triggered": "New alert",
  "alert-escalated": "Alert escalated",
  "alert-updated": "Severity raised",
  "alert-acknowledged": "Alert acknowledged",
  "alert-resolved": "Alert resolved",
};

export function AlertToast({
  event,
  alert,
  onOpen,
}: {
  event: AlertEventName;
  alert: Alert;
  onOpen: () => void;
}) {
  const quiet = event === "alert-resolved" || event === "alert-acknowledged";
  return (
    <div className={`alert-toast${quiet ? " quiet" : ""}`}>
      <strong className={event === "alert-resolved" ? "status-normal" : `sev-${alert.severity}`}>
        {HEADING[event]}
        {quiet ? "" : ` (${alert.severity})`}
      </strong>{" "}
      <span className="alert-toast-device">{alert.deviceId}</span>
      <div className="alert-toast-message">{alert.message}</div>
      <a
        href={`/alerts?alert=${alert.id}`}
        onClick={(e) => {
          e.preventDefault();
          onOpen();
        }}
      >
        View alert #{alert.id}
      </a>
    </div>
  );
}

export function AlertFloodToast({ count, onOpen }: { count: number; onOpen: () => void }) {
  return (
    <div className="alert-toast">
      <strong>
        {count} more new alert{count === 1 ? "" : "s"}
      </strong>
      <div>
        <a
          href="/alerts?status=open"
          onClick={(e) => {
            e.preventDefault();
            onOpen();
          }}
        >
          Open the alerts list
        </a>
      </div>
    </div>
  );
}
