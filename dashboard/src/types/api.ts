// The web role's JSON (README "REST API and Socket.IO"; OpenAPI at /api/openapi.json).

export type Role = "viewer" | "operator" | "admin";
export type Severity = "low" | "medium" | "high" | "critical";
export type AlertStatus = "triggered" | "acknowledged" | "escalated" | "resolved";
export type AlertType =
  | "threshold_exceeded"
  | "threshold_below"
  | "device_offline"
  | "data_anomaly"
  | "trend_warning"
  | "state_duration";
export type ReadingStatus = "normal" | "warning" | "critical";
export type Connectivity = "online" | "offline" | "unknown";

export interface Envelope<T> {
  success: true;
  data: T;
  meta: Record<string, unknown> & { timestamp: string };
}

export interface ApiErrorBody {
  success: false;
  error: { code: string; message: string; details: unknown };
}

export interface Token {
  accessToken: string;
  tokenType: "bearer";
  expiresAt: string;
  username: string;
  role: Role;
}

export interface Thresholds {
  normalMin: number | null;
  normalMax: number | null;
  alertMin: number | null;
  alertMax: number | null;
}

export interface DeviceSummary {
  deviceId: string;
  type: string;
  location: string;
  unit: string | null;
  status: string;
  intervalMs: number;
  connectivity: Connectivity;
  lastReading: { value: number; timestamp: string; status: ReadingStatus } | null;
  alertStatus: Severity | "normal";
  openAlerts: number;
  stats: { avg24h: number | null; min24h: number | null; max24h: number | null; trend: string | null };
  thresholds: Thresholds;
}

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

export interface CurrentReading {
  value: number;
  timestamp: string;
  status: ReadingStatus;
  unit?: string | null;
  sensorType?: string | null;
}

/** A profile channel's or a device's state alert: value === state for forSeconds or more. */
export interface StateAlert {
  state: number;
  forSeconds: number;
  severity: Severity;
  message: string;
}

export interface DeviceDetails extends Thresholds {
  deviceId: string;
  type: string;
  location: string;
  unit: string | null;
  status: string;
  intervalMs: number;
  offlineTimeoutS: number | null;
  /** The device's own: null = its profile's, false = none. */
  stateAlert?: StateAlert | false | null;
  metadata: Record<string, unknown>;
  createdAt: string;
  updatedAt: string;
  connectivity: Connectivity;
  current: CurrentReading | null;
  stats1h: WindowStats | null;
  stats24h: WindowStats | null;
  alertStatus: Severity | "normal";
  openAlerts: number;
}

export interface HistoryPoint {
  timestamp: string;
  value: number;
  min: number;
  max: number;
  count: number;
}

export interface History {
  deviceId: string;
  unit: string | null;
  from: string;
  to: string;
  bucketSeconds: number | null;
  downsampled: boolean;
  points: HistoryPoint[];
}

export interface Alert {
  id: number;
  alertId: number;
  deviceId: string;
  type: AlertType;
  message: string;
  severity: Severity;
  value: number | null;
  threshold: number | null;
  status: AlertStatus;
  triggeredAt: string;
  timestamp: string;
  acknowledgedAt: string | null;
  acknowledgedBy: string | null;
  resolvedAt: string | null;
  resolvedBy: string | null;
  escalatedAt: string | null;
  count: number;
  lastValue: number | null;
  lastSeenAt: string | null;
  silenced: boolean;
  /** Changing state too often: its notifications are held back until it settles. */
  flapping: boolean;
  eventId?: string;
}

export interface AlertTransition {
  from: AlertStatus | null;
  to: AlertStatus;
  actor: string;
  note: string | null;
  at: string;
}

export interface Silence {
  id: number;
  deviceId: string | null;
  alertType: AlertType | null;
  startsAt: string;
  endsAt: string;
  reason: string | null;
  createdBy: string;
}

export interface DashboardFigures {
  totalDevices: number;
  activeDevices: number;
  activeAlerts: number;
  alertsBySeverity: Record<Severity, number>;
  dataPointsLastHour: number;
  systemHealth: string;
  updatedAt: string | null;
}

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
