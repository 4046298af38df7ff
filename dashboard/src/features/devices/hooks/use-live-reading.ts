import { useSelector } from "react-redux";

import { useLiveDevice } from "@/lib/live/context";
import { selectConnection, selectLiveDevice } from "@/lib/live/slice";

/**
 * A device's live state, its room joined only while ``subscribed`` (a card on screen); the
 * state already received stays either way.
 */
export function useLiveState(deviceId: string, subscribed = true) {
  useLiveDevice(subscribed ? deviceId : undefined);
  return useSelector(selectLiveDevice(deviceId));
}

export function useConnected(): boolean {
  return useSelector(selectConnection) === "connected";
}
