// The web role's JSON. The REST API's types are generated from its OpenAPI document
// (src/types/openapi.ts: `npm run gen:api`, checked current by `make test`); here they get
// the names the dashboard uses. The Socket.IO events and the live statistics are not in that
// document: they are written out below.
import type { components } from "./openapi";

type Schemas = components["schemas"];

export type Role = Schemas["TokenOut"]["role"];
export type Severity = Schemas["AlertOut"]["severity"];
export type AlertStatus = Schemas["AlertOut"]["status"];
export type AlertType = Schemas["AlertOut"]["type"];
export type ReadingStatus = Schemas["LastReading"]["status"];
export type Connectivity = Schemas["DeviceSummary"]["connectivity"];

/** Every answer's shape; each endpoint's ``data`` is one of the types below. */
export interface Envelope<T> {
  success: true;
  data: T;
  meta: Record<string, unknown> & { timestamp: string };
}

export type ApiErrorBody = Schemas["ErrorEnvelope"];
export type Token = Schemas["TokenOut"];
export type Thresholds = Schemas["DeviceSummary"]["thresholds"];
export type DeviceSummary = Schemas["DeviceSummary"];
export type CurrentReading = Schemas["Current"];
/** A profile channel's or a device's state alert: value === state for forSeconds or more. */
export type StateAlert = Schemas["StateAlert"];

/** A device's 1 h or 24 h statistics, as processing writes them (the API passes them on). */
export interface WindowStats {
  count: number;
  avg: number | null;
  min: number | null;
  max: number | null;
  std: number | null;
  median: number | null;
  trend: "increasing" | "decreasing" | "stable";
  slopePerHour: number;
  windowStart?: string;
  windowEnd?: string;
}

export type DeviceDetails = Omit<Schemas["DeviceDetails"], "stats1h" | "stats24h"> & {
  stats1h: WindowStats | null;
  stats24h: WindowStats | null;
};

export type HistoryPoint = Schemas["Point"];
export type History = Schemas["History"];
/** An alert; over Socket.IO it carries the event's id too. */
export type Alert = Schemas["AlertOut"] & { eventId?: string };
export type AlertTransition = Schemas["Transition"];
export type Silence = Schemas["SilenceOut"];
export type DashboardFigures = Schemas["Dashboard"] & { alertsBySeverity: Record<Severity, number> };

// --- Socket.IO events ---
export interface SensorDataEvent {
  eventId: string;
  deviceId: string;
  timestamp: string;
  data: { value: number; unit: string | null; status: ReadingStatus };
  stats: { avg?: number | null; min?: number | null; max?: number | null; count?: number; trend?: string };
}

export interface DeviceStatusEvent {
  eventId: string;
  deviceId: string;
  status: "online" | "offline";
  lastSeen: string;
}

export interface SystemStatusEvent {
  eventId: string;
  totalDevices: number;
  activeDevices: number;
  activeAlertsCount: number;
  dataPointsLastHour: number;
  systemHealth: string;
  timestamp: string;
}

export interface ConnectionStatusEvent {
  status: "connected";
  sid: string;
  user: string;
  role: Role;
  lastEventId: string;
  timestamp: string;
}
