import { createContext, useContext, useEffect } from "react";
import { useSelector } from "react-redux";

import type { LiveClient } from "@/lib/live/client";
import { selectLiveDevice } from "@/lib/live/slice";

export const LiveContext = createContext<LiveClient | null>(null);

export function useLiveClient(): LiveClient {
  const client = useContext(LiveContext);
  if (!client) throw new Error("useLiveClient outside <LiveContext.Provider>");
  return client;
}

/** Subscribe to a device's room while the component is mounted; its live state. */
export function useLiveDevice(deviceId: string | undefined) {
  const client = useContext(LiveContext);
  useEffect(() => {
    if (!client || !deviceId) return;
    return client.watchDevice(deviceId);
  }, [client, deviceId]);
  return useSelector(selectLiveDevice(deviceId ?? ""));
}
