// Live state from Socket.IO events, updated in batches (one action per animation frame).
import { createSlice, type PayloadAction } from "@reduxjs/toolkit";

import { env } from "@/config/env";
import type {
  Alert,
  DeviceStatusEvent,
  ReadingStatus,
  SensorDataEvent,
  SystemStatusEvent,
} from "@/types/api";

export type ConnectionState = "connecting" | "connected" | "reconnecting" | "disconnected";

export interface LivePoint {
  t: number; // ms since epoch
  v: number;
}

export interface LiveDevice {
  value: number;
  unit: string | null;
  status: ReadingStatus;
  timestamp: string;
  stats: SensorDataEvent["stats"];
  points: LivePoint[];
  connectivity?: "online" | "offline";
}

export type AlertEventName =
  | "alert-triggered"
  | "alert-acknowledged"
  | "alert-escalated"
  | "alert-updated"
  | "alert-resolved";

export type LiveEvent =
  | { name: "sensor-data"; payload: SensorDataEvent }
  | { name: "device-status"; payload: DeviceStatusEvent }
  | { name: "system-status"; payload: SystemStatusEvent }
  | { name: AlertEventName; payload: Alert };

export interface LiveState {
  connection: ConnectionState;
  error: string | null;
  lastEventId: string | null;
  lastEventAt: number | null;
  devices: Record<string, LiveDevice>;
  system: SystemStatusEvent | null;
  alerts: { event: AlertEventName; alert: Alert }[]; // the newest last, bounded
}

const initialState: LiveState = {
  connection: "disconnected",
  error: null,
  lastEventId: null,
  lastEventAt: null,
  devices: {},
  system: null,
  alerts: [],
};

export const liveSlice = createSlice({
  name: "live",
  initialState,
  reducers: {
    connectionChanged(state, action: PayloadAction<{ state: ConnectionState; error?: string }>) {
      state.connection = action.payload.state;
      state.error = action.payload.error ?? null;
    },
    batch(state, action: PayloadAction<LiveEvent[]>) {
      for (const e of action.payload) {
        state.lastEventId = e.payload.eventId ?? state.lastEventId;
        if (e.name === "sensor-data") {
          const p = e.payload;
          const d = state.devices[p.deviceId];
          const point = { t: Date.parse(p.timestamp), v: p.data.value };
          if (d) {
            if (point.t >= Date.parse(d.timestamp)) {
              d.value = p.data.value;
              d.status = p.data.status;
              d.timestamp = p.timestamp;
              d.unit = p.data.unit;
              d.stats = p.stats;
            }
            d.points.push(point);
            if (d.points.length > env.livePoints) d.points.splice(0, d.points.length - env.livePoints);
          } else {
            state.devices[p.deviceId] = {
              value: p.data.value,
              unit: p.data.unit,
              status: p.data.status,
              timestamp: p.timestamp,
              stats: p.stats,
              points: [point],
            };
          }
        } else if (e.name === "device-status") {
          const d = state.devices[e.payload.deviceId];
          if (d) d.connectivity = e.payload.status;
        } else if (e.name === "system-status") {
          state.system = e.payload;
        } else {
          state.alerts.push({ event: e.name, alert: e.payload });
          if (state.alerts.length > 200) state.alerts.splice(0, state.alerts.length - 200);
        }
      }
      if (action.payload.length) state.lastEventAt = Date.now();
    },
  },
});

export const { connectionChanged, batch } = liveSlice.actions;

type Root = { live: LiveState };
export const selectConnection = (s: Root) => s.live.connection;
export const selectLiveDevice = (id: string) => (s: Root) => s.live.devices[id];
export const selectSystem = (s: Root) => s.live.system;
export const selectAlertEvents = (s: Root) => s.live.alerts;
