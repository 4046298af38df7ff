import type { AlertStatus, Severity } from "@/types/api";

import "@/features/alerts/alerts.css";

export function SeverityBadge({ severity }: { severity: Severity }) {
  return <span className={`sev-badge sev-bg-${severity}`}>{severity}</span>;
}

/** The status text; the contract for end-to-end tests is the data-testid on the cell. */
export function StatusText({ status }: { status: AlertStatus }) {
  return <span className={`alert-status alert-status-${status}`}>{status}</span>;
}
