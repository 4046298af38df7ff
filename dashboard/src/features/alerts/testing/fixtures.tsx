// Test helpers for the alerts feature: alerts, envelopes, and the live client of a render.
import { HttpResponse } from "msw";
import { useEffect } from "react";

import type { LiveClient } from "@/lib/live/client";
import { useLiveClient } from "@/lib/live/context";
import type { AlertEventName, LiveEvent } from "@/lib/live/slice";
import type { Alert } from "@/types/api";


export function makeAlert(over: Partial<Alert> = {}): Alert {
  const id = over.id ?? 1;
  return {
    id,
    alertId: id,
    deviceId: "device-001",
    type: "threshold_exceeded",
    message: `Temperature 41.2 above 40 on device-001 (#${id})`,
    severity: "high",
    value: 41.2,
    threshold: 40,
    status: "triggered",
    triggeredAt: "2026-01-01T10:00:00.000Z",
    timestamp: "2026-01-01T10:00:00.000Z",
    acknowledgedAt: null,
    acknowledgedBy: null,
    resolvedAt: null,
    resolvedBy: null,
    escalatedAt: null,
    count: 1,
    lastValue: 41.2,
    lastSeenAt: "2026-01-01T10:00:00.000Z",
    silenced: false,
    flapping: false,
    ...over,
  };
}

export function listBody(alerts: Alert[], over: Record<string, number | boolean> = {}) {
  const count = (s: string) => alerts.filter((a) => a.severity === s).length;
  return {
    success: true,
    data: { alerts },
    meta: {
      totalAlerts: alerts.length,
      criticalAlerts: count("critical"),
      highAlerts: count("high"),
      mediumAlerts: count("medium"),
      lowAlerts: count("low"),
      limit: 25,
      offset: 0,
      timestamp: "2026-01-01T10:00:00.000Z",
      ...over,
    },
  };
}

export function ok<T>(data: T, status = 200) {
  return HttpResponse.json(
    { success: true, data, meta: { timestamp: "2026-01-01T10:00:00.000Z" } },
    { status },
  );
}

export function apiError(status: number, code: string, message: string) {
  return HttpResponse.json({ success: false, error: { code, message, details: null } }, { status });
}

/** Renders nothing; hands the render's LiveClient to the test. */
export function LiveProbe({ onClient }: { onClient: (client: LiveClient) => void }) {
  const client = useLiveClient();
  useEffect(() => {
    onClient(client);
  }, [client, onClient]);
  return null;
}

let nextEventId = 1000;

/** Deliver an alert-* event as the Socket.IO connection would. */
export function emitAlertEvent(client: LiveClient, name: AlertEventName, alert: Alert): void {
  nextEventId += 1;
  const event = { name, payload: { ...alert, eventId: String(nextEventId) } } as LiveEvent;
  (client as unknown as { receive(e: LiveEvent): void }).receive(event);
}
