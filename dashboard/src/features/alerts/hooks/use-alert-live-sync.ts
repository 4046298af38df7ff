// Live alert-* events keep the Alert cache current: the alert is patched in place at once in
// every cached list and its details (this also confirms an optimistic acknowledge/resolve),
// then the lists are refetched (throttled: one refetch for a burst of events) so new alerts
// appear, alerts leave lists whose filter they no longer match, and counts follow.
// Components that show alerts call this; one listener per live client however many do.
import { useEffect } from "react";
import { useDispatch, useStore } from "react-redux";

import { assignAlert, patchCachedAlert } from "@/features/alerts/api/alert-cache";
import { api } from "@/lib/api-client";
import type { LiveClient } from "@/lib/live/client";
import { useLiveClient } from "@/lib/live/context";
import type { Alert } from "@/types/api";

export const REFETCH_THROTTLE_MS = 750;

type Dispatch = Parameters<typeof patchCachedAlert>[0] & ((action: unknown) => unknown);

interface Sync {
  users: number;
  stop: () => void;
}

const syncs = new WeakMap<LiveClient, Sync>();

function start(client: LiveClient, dispatch: Dispatch, getState: () => unknown): () => void {
  let timer: ReturnType<typeof setTimeout> | null = null;
  const changed = new Set<number>();
  const flush = () => {
    timer = null;
    const ids = [...changed];
    changed.clear();
    dispatch(
      api.util.invalidateTags([
        { type: "Alert", id: "LIST" },
        ...ids.map((id) => ({ type: "Alert" as const, id })),
      ]),
    );
  };
  const unsubscribe = client.onAlert((event) => {
    const alert = event.payload as Alert;
    if (typeof alert?.id !== "number") return;
    patchCachedAlert(dispatch, getState(), alert.id, (cached) => {
      // An event older than what is shown (a replay after a reconnect) does not undo it.
      if (cached.status === "resolved" && alert.status !== "resolved") return;
      assignAlert(cached, alert);
    });
    changed.add(alert.id);
    timer ??= setTimeout(flush, REFETCH_THROTTLE_MS);
  });
  return () => {
    unsubscribe();
    if (timer !== null) clearTimeout(timer);
  };
}

export function useAlertLiveSync(): void {
  const client = useLiveClient();
  const dispatch = useDispatch() as unknown as Dispatch;
  const store = useStore();
  useEffect(() => {
    let sync = syncs.get(client);
    if (!sync) {
      sync = { users: 0, stop: start(client, dispatch, store.getState) };
      syncs.set(client, sync);
    }
    sync.users += 1;
    const mine = sync;
    return () => {
      mine.users -= 1;
      if (mine.users === 0) {
        mine.stop();
        syncs.delete(client);
      }
    };
  }, [client, dispatch, store]);
}
