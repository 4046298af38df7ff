// Test data shaped like the API's answers and Socket.IO events.
import { http, HttpResponse } from "msw";

import type { LiveEvent } from "@/lib/live/slice";
import type { DeviceDetails, DeviceSummary, ReadingStatus, WindowStats } from "@/types/api";


export function deviceSummary(over: Partial<DeviceSummary> = {}): DeviceSummary {
  return {
    deviceId: "device-001",
    type: "temperature",
    location: "assembly-line-1",
    unit: "celsius",
    status: "active",
    intervalMs: 2000,
    connectivity: "online",
    lastReading: { value: 42.5, timestamp: new Date().toISOString(), status: "normal" },
    alertStatus: "normal",
    openAlerts: 0,
    stats: { avg24h: 40, min24h: 20, max24h: 60, trend: "stable" },
    thresholds: { normalMin: 20, normalMax: 80, alertMin: 15, alertMax: 85 },
    ...over,
  };
}

export function windowStats(over: Partial<WindowStats> & { slopePerHour?: number } = {}): WindowStats {
  return {
    count: 1800,
    avg: 50.25,
    min: 21.5,
    max: 79.75,
    std: 3.125,
    median: 49.5,
    trend: "stable",
    slopePerHour: 0,
    ...over,
  };
}

export function deviceDetails(over: Partial<DeviceDetails> = {}): DeviceDetails {
  return {
    deviceId: "device-001",
    type: "temperature",
    location: "assembly-line-1",
    unit: "celsius",
    status: "active",
    normalMin: 20,
    normalMax: 80,
    alertMin: 15,
    alertMax: 85,
    intervalMs: 2000,
    offlineTimeoutS: null,
    metadata: {},
    createdAt: "2026-01-01T00:00:00Z",
    updatedAt: "2026-01-01T00:00:00Z",
    connectivity: "online",
    current: { value: 42.5, timestamp: new Date().toISOString(), status: "normal", unit: "celsius" },
    stats1h: windowStats(),
    stats24h: windowStats({ count: 43_200 }),
    alertStatus: "normal",
    openAlerts: 0,
    ...over,
  };
}

let nextEventId = 1;

export function sensorData(
  deviceId: string,
  value: number,
  timestamp: string | number,
  status: ReadingStatus = "normal",
): LiveEvent {
  return {
    name: "sensor-data",
    payload: {
      eventId: String(nextEventId++),
      deviceId,
      timestamp: typeof timestamp === "number" ? new Date(timestamp).toISOString() : timestamp,
      data: { value, unit: "celsius", status },
      stats: {},
    },
  };
}

export function envelope<T>(data: T, meta: Record<string, unknown> = {}) {
  return { success: true, data, meta: { timestamp: new Date().toISOString(), ...meta } };
}

/** A /history answer of raw readings ``[t, value]`` (ms since epoch), as the API gives them. */
export function historyAnswer(deviceId: string, from: string | null, points: [number, number][]) {
  return envelope({
    deviceId,
    unit: "celsius",
    from: from ?? new Date(0).toISOString(),
    to: new Date().toISOString(),
    bucketSeconds: null,
    downsampled: false,
    points: points.map(([t, v]) => ({ timestamp: new Date(t).toISOString(), value: v, min: v, max: v, count: 1 })),
  });
}

/** Every device's /history, empty: what a card on screen asks for (its sparkline's start). */
export const emptyHistory = () =>
  http.get("/api/devices/:id/history", ({ params, request }) =>
    HttpResponse.json(historyAnswer(String(params.id), new URL(request.url).searchParams.get("from"), [])),
  );
