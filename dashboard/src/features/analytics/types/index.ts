// GET /api/analytics/summary, /api/analytics/trends/{id}, /api/metrics/system.
import type { Thresholds } from "@/types/api";

export interface SummaryDevice {
  deviceId: string;
  type: string;
  unit: string | null;
  readings: number;
  avg: number | null;
  min: number | null;
  max: number | null;
  availability: number; // share of hours with data, 0..1
}

export interface Heatmap {
  hours: string[]; // ISO, one per column
  devices: string[]; // one per row (devices with data; the first 100)
  values: (number | null)[][]; // [device][hour]: hourly average
}

export interface AnalyticsSummary {
  hours: number;
  from: string;
  to: string;
  devices: SummaryDevice[];
  heatmap: Heatmap;
  alerts: { total: number; byType: Record<string, number>; bySeverity: Record<string, number> };
}

export interface HourPoint {
  hour: string;
  avg: number | null;
  min: number | null;
  max: number | null;
  count: number;
  std: number | null;
}

export interface LiveTrend {
  trend: string | null;
  slope: number | null;
  avg: number | null;
}

export interface DeviceTrend {
  deviceId: string;
  hours: number;
  unit: string | null;
  trend1h: LiveTrend | null;
  trend24h: LiveTrend | null;
  hourly: HourPoint[];
  slopePerHour: number | null;
  change: number | null;
}

export interface SystemMetrics {
  version: string;
  process: { pid: number; uptimeS: number; maxRssMiB: number; cpuUserS: number; cpuSystemS: number };
  host: { loadAverage: number[]; cpus: number | null };
  redis:
    | { usedMemoryMiB: number; connectedClients: number; opsPerSecond: number; version: string | null }
    | { error: string };
  database: { sizeMiB: number; connections: number; version: string };
}

export interface DeviceRange extends Thresholds {
  deviceId: string;
  type: string;
  unit: string | null;
}

export const HOUR_CHOICES = [6, 12, 24, 48, 72, 168] as const;
