// Test data for the analytics feature.
import type { AnalyticsSummary } from "@/features/analytics/types";

export const HOURS = ["2026-01-01T08:00:00Z", "2026-01-01T09:00:00Z", "2026-01-01T10:00:00Z", "2026-01-01T11:00:00Z"];

export function makeSummary(over: Partial<AnalyticsSummary> = {}): AnalyticsSummary {
  return {
    hours: 4,
    from: HOURS[0]!,
    to: "2026-01-01T12:00:00Z",
    devices: [
      { deviceId: "device-001", type: "temperature", unit: "°C", readings: 14400, avg: 21.75, min: 19.5, max: 24.25, availability: 1 },
      { deviceId: "device-002", type: "humidity", unit: "%", readings: 7200, avg: 50, min: 40, max: 60, availability: 0.5 },
    ],
    heatmap: {
      hours: HOURS,
      devices: ["device-001", "device-002"],
      values: [
        [20.5, 21.5, 22.5, 23.5],
        [55, null, 45, null],
      ],
    },
    alerts: { total: 3, byType: { threshold_exceeded: 2, device_offline: 1 }, bySeverity: { high: 2, critical: 1 } },
    ...over,
  };
}

export function envelope<T>(data: T) {
  return { success: true, data, meta: { timestamp: "2026-01-01T12:00:00Z" } };
}
