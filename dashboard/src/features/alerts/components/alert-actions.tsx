// Acknowledge and Resolve, for operators and admins only (a viewer sees neither button).
// Both are optimistic (see api/alert-cache.ts); an error rolls back with a toast.
import { useSelector } from "react-redux";

import { useAcknowledgeAlertMutation } from "@/features/alerts/api/acknowledge-alert";
import { useResolveAlertMutation } from "@/features/alerts/api/resolve-alert";
import { canAcknowledge } from "@/features/alerts/types";
import { can, selectSession } from "@/lib/session";
import type { Alert } from "@/types/api";

export function useCanAct(): boolean {
  return can(useSelector(selectSession), "operator");
}

export function AlertActions({ alert, note }: { alert: Alert; note?: string }) {
  const allowed = useCanAct();
  const [acknowledge, ack] = useAcknowledgeAlertMutation();
  const [resolve, res] = useResolveAlertMutation();
  if (!allowed || alert.status === "resolved") return null;
  const busy = ack.isLoading || res.isLoading;
  const payload = note?.trim() ? { id: alert.id, note: note.trim() } : { id: alert.id };
  return (
    <span className="alert-actions">
      {canAcknowledge(alert.status) ? (
        <button type="button" disabled={busy} onClick={() => void acknowledge(payload)}>
          Acknowledge
        </button>
      ) : null}
      <button type="button" className="secondary" disabled={busy} onClick={() => void resolve(payload)}>
        Resolve
      </button>
    </span>
  );
}
