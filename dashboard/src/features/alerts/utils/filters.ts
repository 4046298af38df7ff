// The alerts page's filters live in the address (shareable, Back works); this turns them into
// the query of GET /api/alerts.
import {
  ALERT_TYPES,
  DEVICE_ID_PATTERN,
  SEVERITIES,
  STATUSES,
  type AlertListParams,
  type StatusFilter,
} from "@/features/alerts/types";
import type { AlertType, Severity } from "@/types/api";

export const PAGE_SIZE = 25;

export const RANGES = {
  "1h": { label: "Last hour", ms: 3600_000 },
  "24h": { label: "Last 24 hours", ms: 24 * 3600_000 },
  "7d": { label: "Last 7 days", ms: 7 * 24 * 3600_000 },
  "30d": { label: "Last 30 days", ms: 30 * 24 * 3600_000 },
} as const;
export type RangeKey = keyof typeof RANGES | "" | "custom";

export interface AlertFilters {
  status: StatusFilter;
  severity: Severity | "";
  deviceId: string;
  type: AlertType | "";
  range: RangeKey;
  from: string; // ISO, for range "custom"
  to: string;
  page: number; // 1-based
}

export const DEFAULT_STATUS: StatusFilter = "all";

function oneOf<T extends string>(value: string | null, allowed: readonly T[], fallback: T | ""): T | "" {
  return value !== null && (allowed as readonly string[]).includes(value) ? (value as T) : fallback;
}

function isoOrEmpty(value: string | null): string {
  return value && !Number.isNaN(Date.parse(value)) ? new Date(value).toISOString() : "";
}

export function filtersFromParams(p: URLSearchParams): AlertFilters {
  const status = oneOf<StatusFilter>(p.get("status"), ["open", "all", ...STATUSES], DEFAULT_STATUS);
  const device = p.get("deviceId") ?? "";
  const from = isoOrEmpty(p.get("from"));
  const to = isoOrEmpty(p.get("to"));
  const range = oneOf<RangeKey>(p.get("range"), ["1h", "24h", "7d", "30d", "custom"], "");
  const page = Number(p.get("page"));
  return {
    status: status || DEFAULT_STATUS,
    severity: oneOf(p.get("severity"), SEVERITIES, ""),
    deviceId: DEVICE_ID_PATTERN.test(device) ? device : "",
    type: oneOf(p.get("type"), ALERT_TYPES, ""),
    range: range || (from || to ? "custom" : ""),
    from,
    to,
    page: Number.isInteger(page) && page > 0 ? page : 1,
  };
}

/** Only what differs from the defaults goes in the address. */
export function filtersToParams(f: AlertFilters, keep?: URLSearchParams): URLSearchParams {
  const p = new URLSearchParams();
  const alert = keep?.get("alert");
  if (alert) p.set("alert", alert);
  if (f.status !== DEFAULT_STATUS) p.set("status", f.status);
  if (f.severity) p.set("severity", f.severity);
  if (f.deviceId) p.set("deviceId", f.deviceId);
  if (f.type) p.set("type", f.type);
  if (f.range && f.range !== "custom") p.set("range", f.range);
  if (f.range === "custom") {
    if (f.from) p.set("from", f.from);
    if (f.to) p.set("to", f.to);
  }
  if (f.page > 1) p.set("page", String(f.page));
  return p;
}

/** `now` is rounded to the minute by the caller, so a relative range moves once a minute. */
export function filtersToQuery(f: AlertFilters, now: number, pageSize = PAGE_SIZE): AlertListParams {
  const q: AlertListParams = { status: f.status, limit: pageSize, offset: (f.page - 1) * pageSize };
  if (f.severity) q.severity = f.severity;
  if (f.deviceId) q.deviceId = f.deviceId;
  if (f.type) q.type = f.type;
  if (f.range === "custom") {
    if (f.from) q.from = f.from;
    if (f.to) q.to = f.to;
  } else if (f.range) {
    q.from = new Date(now - RANGES[f.range].ms).toISOString();
  }
  return q;
}
