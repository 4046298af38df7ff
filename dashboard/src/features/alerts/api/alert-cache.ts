// Edit an alert wherever the cache holds it (every alerts list and its details), for the
// optimistic acknowledge/resolve and for live alert-* events. Returns the patches (undo()).
import type { ThunkAction, UnknownAction } from "@reduxjs/toolkit";

import { getAlertsApi } from "@/features/alerts/api/get-alerts";
import { getAlertApi } from "@/features/alerts/api/get-alert";
import type { AlertDetails } from "@/features/alerts/types";
import { api } from "@/lib/api-client";
import type { Alert } from "@/types/api";

// RTK Query's patch thunks need a thunk-capable dispatch; the store's (and a lifecycle's) is one.
type Dispatch = (thunk: ThunkAction<Patch, never, unknown, UnknownAction>) => Patch;
type ApiState = Parameters<typeof api.util.selectInvalidatedBy>[0];

export interface Patch {
  undo: () => void;
}

export function patchCachedAlert(
  dispatch: Dispatch,
  state: unknown,
  id: number,
  change: (alert: Alert, details: AlertDetails | null) => void,
): Patch[] {
  const patches: Patch[] = [];
  for (const entry of api.util.selectInvalidatedBy(state as ApiState, [{ type: "Alert", id }])) {
    if (entry.endpointName === "alertsList") {
      patches.push(
        dispatch(
          getAlertsApi.util.updateQueryData(
            "alertsList",
            entry.originalArgs as Parameters<typeof getAlertsApi.endpoints.alertsList.initiate>[0],
            (draft) => {
              const a = draft.alerts.find((x) => x.id === id);
              if (a) change(a, null);
            },
          ),
        ),
      );
    } else if (entry.endpointName === "alertDetails") {
      patches.push(
        dispatch(
          getAlertApi.util.updateQueryData("alertDetails", id, (draft) => {
            change(draft, draft);
          }),
        ),
      );
    }
  }
  return patches;
}

/** Copy the server's fields onto a cached alert (transitions and local fields are kept). */
export function assignAlert(target: Alert, source: Alert): void {
  const fields: Partial<Alert> = { ...source };
  delete fields.eventId;
  Object.assign(target, fields);
}

type Action = "acknowledge" | "resolve";

const DONE: Record<Action, string> = { acknowledge: "acknowledged", resolve: "resolved" };

/**
 * The optimistic half of acknowledge/resolve: the cached alert changes at once; the server's
 * answer replaces it; an error puts it back and shows the server's message. The live
 * alert-* event then confirms it everywhere (see use-alert-live-sync).
 */
export async function optimisticAction(
  action: Action,
  arg: { id: number; note?: string },
  lifecycle: {
    dispatch: Dispatch;
    getState: () => unknown;
    queryFulfilled: Promise<{ data: Alert }>;
  },
  onError: (message: string) => void,
  message: (error: unknown) => string,
): Promise<void> {
  const { dispatch, getState, queryFulfilled } = lifecycle;
  const state = getState() as { session?: { session: { username: string } | null } };
  const who = state.session?.session?.username ?? "you";
  const at = new Date().toISOString();
  const patches = patchCachedAlert(dispatch, state, arg.id, (a, details) => {
    if (a.status === "resolved") return;
    if (action === "acknowledge" && a.status === "acknowledged") return;
    const from = a.status;
    if (action === "acknowledge") {
      a.status = "acknowledged";
      a.acknowledgedAt = at;
      a.acknowledgedBy = who;
    } else {
      a.status = "resolved";
      a.resolvedAt = at;
      a.resolvedBy = who;
    }
    details?.transitions.push({ from, to: a.status, actor: who, note: arg.note ?? null, at });
  });
  try {
    const { data } = await queryFulfilled;
    patchCachedAlert(dispatch, getState(), arg.id, (a) => assignAlert(a, data));
  } catch (failure) {
    for (const p of patches) p.undo();
    const error = (failure as { error?: unknown }).error ?? failure;
    onError(`Alert #${arg.id} could not be ${DONE[action]}: ${message(error)}`);
  }
}
