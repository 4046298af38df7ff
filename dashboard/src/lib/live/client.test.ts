// LiveClient against a stand-in socket: the session ends (logout, so the router shows the
// login page) when the server says the token expired or the session was revoked, or refuses
// the token; a refusal the server marks as retryable is tried again after a while.
import { afterEach, beforeEach, describe, expect, it, vi, type Mock } from "vitest";

import { LiveClient } from "@/lib/live/client";
import { loggedOut } from "@/lib/session";

type Handler = (...args: unknown[]) => void;

class FakeSocket {
  handlers = new Map<string, Handler[]>();
  active = true;
  connected = false;
  connect = vi.fn(() => this);
  disconnect = vi.fn(() => {
    this.active = false;
    return this;
  });
  emit = vi.fn();
  on(event: string, handler: Handler) {
    this.handlers.set(event, [...(this.handlers.get(event) ?? []), handler]);
    return this;
  }
  fire(event: string, ...args: unknown[]) {
    for (const h of this.handlers.get(event) ?? []) h(...args);
  }
}

const sockets: FakeSocket[] = [];
vi.mock("socket.io-client", () => ({
  io: () => {
    const s = new FakeSocket();
    sockets.push(s);
    return s;
  },
}));

type Dispatch = (action: { type: string; payload?: unknown }) => unknown;

/** The socket the client made. */
function made(): FakeSocket {
  const s = sockets[0];
  if (!s) throw new Error("the client made no socket");
  return s;
}

function refusal(data: unknown): Error & { data: unknown } {
  return Object.assign(new Error("refused"), { data });
}

describe("LiveClient", () => {
  let dispatch: Mock<Dispatch>;
  let client: LiveClient;

  beforeEach(() => {
    vi.useFakeTimers();
    sockets.length = 0;
    dispatch = vi.fn<Dispatch>();
    client = new LiveClient(dispatch);
    client.connect("a-token");
  });

  afterEach(() => {
    client.disconnect();
    vi.useRealTimers();
  });

  const loggedOutCalls = () =>
    dispatch.mock.calls.filter(([action]) => action.type === loggedOut.type);

  it.each(["token_expired", "session_revoked"])("logs out on the server's %s", (code) => {
    const socket = made();
    socket.fire("error", { code, message: "log in again" });
    expect(loggedOutCalls()).toHaveLength(1);
    expect(socket.disconnect).toHaveBeenCalled();
  });

  it("ignores other error events", () => {
    made().fire("error", { code: "unknown_device", message: "no such device" });
    expect(loggedOutCalls()).toHaveLength(0);
    expect(made().disconnect).not.toHaveBeenCalled();
  });

  it("logs out when the server refuses the token", () => {
    const socket = made();
    socket.active = false;
    socket.fire("connect_error", refusal({ code: "unauthorized", message: "expired" }));
    expect(loggedOutCalls()).toHaveLength(1);
  });

  it("retries a refusal the server marks as retryable, with growing pauses", () => {
    const socket = made();
    socket.active = false; // refused by the server: socket.io-client stops there
    socket.fire("connect_error", refusal({ code: "unavailable", details: { retry: true } }));
    expect(loggedOutCalls()).toHaveLength(0);
    expect(socket.connect).not.toHaveBeenCalled();
    vi.advanceTimersByTime(500);
    expect(socket.connect).toHaveBeenCalledTimes(1);
    socket.fire("connect_error", refusal({ code: "unavailable", details: { retry: true } }));
    vi.advanceTimersByTime(499);
    expect(socket.connect).toHaveBeenCalledTimes(1); // the second pause is longer
    vi.advanceTimersByTime(501);
    expect(socket.connect).toHaveBeenCalledTimes(2);
  });

  it("leaves transport failures to socket.io-client's own reconnection", () => {
    const socket = made(); // still active: it reconnects by itself
    socket.fire("connect_error", new Error("websocket error"));
    vi.advanceTimersByTime(10_000);
    expect(socket.connect).not.toHaveBeenCalled();
    expect(loggedOutCalls()).toHaveLength(0);
  });
});
