import type { Alert, AlertStatus, AlertTransition, AlertType, Severity } from "@/types/api";

/** `open` = triggered, acknowledged or escalated (the server's default); `all` adds resolved. */
export type StatusFilter = "open" | "all" | AlertStatus;

export interface AlertListParams {
  status?: StatusFilter;
  severity?: Severity;
  deviceId?: string;
  type?: AlertType;
  from?: string; // ISO 8601
  to?: string;
  limit?: number;
  offset?: number;
}

export interface AlertListMeta {
  totalAlerts: number;
  criticalAlerts: number;
  highAlerts: number;
  mediumAlerts: number;
  lowAlerts: number;
  limit: number;
  offset: number;
  /** More than 10,000 match: the counts are those of the newest 10,000. */
  countsCapped?: boolean;
}

export interface AlertList {
  alerts: Alert[];
  meta: AlertListMeta;
}

export interface AlertDetails extends Alert {
  transitions: AlertTransition[];
}

export interface AlertAction {
  id: number;
  note?: string;
}

export interface NewSilence {
  deviceId?: string;
  type?: AlertType;
  durationS?: number;
  endsAt?: string;
  reason?: string;
}

export const SEVERITIES: readonly Severity[] = ["critical", "high", "medium", "low"];
export const SEVERITY_COLOUR: Record<Severity, string> = {
  critical: "#dc2626",
  high: "#ea580c",
  medium: "#d97706",
  low: "#0891b2",
};
export const STATUSES: readonly AlertStatus[] = ["triggered", "acknowledged", "escalated", "resolved"];
export const ALERT_TYPES: readonly AlertType[] = [
  "threshold_exceeded",
  "threshold_below",
  "device_offline",
  "data_anomaly",
  "trend_warning",
  "state_duration",
];
export const DEVICE_ID_PATTERN = /^[A-Za-z0-9_.:-]{1,64}$/;

export function typeLabel(type: string): string {
  return type.replace(/_/g, " ");
}

export function isOpen(status: AlertStatus): boolean {
  return status !== "resolved";
}

export function canAcknowledge(status: AlertStatus): boolean {
  return status === "triggered" || status === "escalated";
}

/** What "flapping" on an alert means (its title in the list and the detail). */
export const FLAPPING_HINT =
  "Opens and resolves too often: its notifications are held back until it has been quiet for a while";
