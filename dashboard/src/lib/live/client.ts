// The Socket.IO connection: token and last event id on (re)connect, rooms re-joined with the
// last event id so the server replays what was missed, duplicates dropped, and events handed
// to the store in one batch per animation frame (charts redraw at most once a frame).
// The server ends a session when its token expires or its user's sessions are revoked (an
// `error` event, then a disconnect): that is a logout, back to the login page. A connect the
// server refuses for now (busy, Redis away: `details.retry`) is tried again after a while;
// socket.io-client does not retry refusals on its own.
import { io, type Socket } from "socket.io-client";

import { env } from "@/config/env";
import { batch, connectionChanged, type LiveEvent } from "@/lib/live/slice";
import { loggedOut } from "@/lib/session";

type Dispatch = (action: { type: string; payload?: unknown }) => unknown;

const EVENTS = [
  "sensor-data",
  "device-status",
  "system-status",
  "alert-triggered",
  "alert-acknowledged",
  "alert-escalated",
  "alert-updated",
  "alert-resolved",
] as const;

export type AlertListener = (event: LiveEvent) => void;

/** The server's error envelope (an `error` event, a connect_error's data, a failed ack). */
export interface ServerError {
  code?: string;
  message?: string;
  details?: { retry?: boolean };
}

/** Errors after which the token is no good: log in again. */
const SESSION_OVER = new Set(["token_expired", "session_revoked", "unauthorized"]);
const RETRY_MIN_MS = 500;
const RETRY_MAX_MS = 5000;

export class LiveClient {
  private socket: Socket | null = null;
  private lastEventId: string | null = null;
  private seen = new Set<string>();
  private queue: LiveEvent[] = [];
  private frame: number | null = null;
  private devices = new Map<string, number>(); // device id -> subscribers
  private rooms = new Set<"alerts" | "system">();
  private listeners = new Set<AlertListener>();
  private retries = 0;
  private retryTimer: ReturnType<typeof setTimeout> | null = null;

  constructor(private readonly dispatch: Dispatch) {}

  connect(token: string): void {
    this.disconnect();
    this.dispatch(connectionChanged({ state: "connecting" }));
    const socket = io(env.apiBase || undefined, {
      path: "/socket.io",
      transports: ["websocket", "polling"],
      auth: (cb) => cb({ token, lastEventId: this.lastEventId }),
      reconnectionDelayMax: 5000,
    });
    this.socket = socket;
    socket.on("connect", () => {
      this.retries = 0;
      this.dispatch(connectionChanged({ state: "connected" }));
      for (const id of this.devices.keys()) this.join("subscribe-device", { deviceId: id });
      for (const room of this.rooms) this.join(`subscribe-${room}`, {});
    });
    socket.on("disconnect", (reason) => {
      const manual = reason === "io client disconnect";
      this.dispatch(connectionChanged({ state: manual ? "disconnected" : "reconnecting" }));
    });
    socket.on("connect_error", (err: Error & { data?: ServerError }) => {
      if (err.data?.code && SESSION_OVER.has(err.data.code)) {
        this.sessionOver();
        return;
      }
      this.dispatch(
        connectionChanged({ state: "reconnecting", error: err.data?.message ?? err.message }),
      );
      // Refused by the server (not a transport failure): socket.io-client leaves it there.
      if (!socket.active) this.retryLater(socket);
    });
    socket.on("error", (payload: ServerError) => {
      if (payload.code === "token_expired" || payload.code === "session_revoked") {
        this.sessionOver();
      }
    });
    for (const name of EVENTS) {
      socket.on(name, (payload: { eventId?: string }) => this.receive({ name, payload } as LiveEvent));
    }
  }

  disconnect(): void {
    if (this.retryTimer !== null) clearTimeout(this.retryTimer);
    this.retryTimer = null;
    this.socket?.disconnect();
    this.socket = null;
  }

  private sessionOver(): void {
    this.disconnect();
    this.dispatch(connectionChanged({ state: "disconnected", error: "session ended" }));
    this.dispatch(loggedOut()); // the router takes the user to the login page
  }

  private retryLater(socket: Socket): void {
    if (this.retryTimer !== null || this.socket !== socket) return;
    const ceiling = Math.min(RETRY_MAX_MS, RETRY_MIN_MS * 2 ** this.retries);
    this.retries += 1;
    const delay = ceiling / 2 + Math.random() * (ceiling / 2); // jitter: no storm again
    this.retryTimer = setTimeout(() => {
      this.retryTimer = null;
      if (this.socket === socket) socket.connect();
    }, delay);
  }

  /** Live data for a device while the returned function is not called. */
  watchDevice(deviceId: string): () => void {
    const n = this.devices.get(deviceId) ?? 0;
    this.devices.set(deviceId, n + 1);
    if (n === 0 && this.socket?.connected) this.join("subscribe-device", { deviceId });
    return () => {
      const left = (this.devices.get(deviceId) ?? 1) - 1;
      if (left > 0) {
        this.devices.set(deviceId, left);
        return;
      }
      this.devices.delete(deviceId);
      this.socket?.emit("unsubscribe-device", { deviceId });
    };
  }

  watch(room: "alerts" | "system"): void {
    if (this.rooms.has(room)) return;
    this.rooms.add(room);
    if (this.socket?.connected) this.join(`subscribe-${room}`, {});
  }

  onAlert(listener: AlertListener): () => void {
    this.listeners.add(listener);
    return () => this.listeners.delete(listener);
  }

  private join(event: string, data: Record<string, unknown>): void {
    this.socket?.emit(event, { ...data, lastEventId: this.lastEventId ?? undefined });
  }

  private receive(event: LiveEvent): void {
    const id = event.payload.eventId;
    if (id) {
      if (this.seen.has(id)) return; // live and replayed: once is enough
      this.seen.add(id);
      if (this.seen.size > 5000) this.seen = new Set([...this.seen].slice(-2500));
      if (this.lastEventId === null || Number(id) > Number(this.lastEventId)) this.lastEventId = id;
    }
    if (event.name.startsWith("alert-")) for (const l of this.listeners) l(event);
    this.queue.push(event);
    if (this.frame === null) {
      const flush = () => {
        this.frame = null;
        const events = this.queue;
        this.queue = [];
        this.dispatch(batch(events));
      };
      this.frame =
        typeof requestAnimationFrame === "function"
          ? requestAnimationFrame(flush)
          : (setTimeout(flush, 16) as unknown as number);
    }
  }
}
