// A toast for each alert-triggered / alert-escalated / alert-updated (its severity rose) event
// (severity colour, message, a link to the alert), a short quiet one for alert-resolved; none for silenced alerts. A burst
// (a storm, or the replay after a reconnect) becomes one "N new alerts" toast. Called once,
// in the app's layout; it also keeps the Alert cache in step with live events.
import { createElement, useEffect, useRef } from "react";
import toast from "react-hot-toast";
import { useNavigate } from "react-router-dom";

import { AlertFloodToast, AlertToast } from "@/features/alerts/components/alert-toast";
import { useAlertLiveSync } from "@/features/alerts/hooks/use-alert-live-sync";
import { SEVERITY_COLOUR } from "@/features/alerts/types";
import { useLiveClient } from "@/lib/live/context";
import type { AlertEventName } from "@/lib/live/slice";
import type { Alert, Severity } from "@/types/api";

// The page's colours (react-hot-toast draws white boxes otherwise, also in the dark theme).
const THEMED = { background: "var(--panel)", color: "var(--fg)", border: "1px solid var(--border)" };

const DURATION: Record<Severity, number> = { critical: 15000, high: 10000, medium: 7000, low: 5000 };
/** More than this many loud toasts within FLOOD_WINDOW_MS: one summary toast instead. */
export const FLOOD_LIMIT = 5;
const FLOOD_WINDOW_MS = 3000;

export function useAlertToasts(): void {
  useAlertLiveSync();
  const client = useLiveClient();
  const navigate = useNavigate();
  const navigateRef = useRef(navigate);
  useEffect(() => {
    navigateRef.current = navigate;
  }, [navigate]);

  useEffect(() => {
    const recent: number[] = [];
    let flooded = 0;
    return client.onAlert((event) => {
      const name = event.name as AlertEventName;
      const alert = event.payload as Alert;
      if (!alert || alert.silenced || alert.flapping) return; // held back, as notifications are
      const open = (id: string) => () => {
        toast.dismiss(id);
        navigateRef.current(`/alerts?alert=${alert.id}`);
      };
      if (name === "alert-resolved") {
        const id = `alert-${alert.id}-resolved`;
        toast(createElement(AlertToast, { event: name, alert, onOpen: open(id) }), {
          id,
          duration: 3000,
          className: "alert-toast-quiet",
          style: { ...THEMED, borderLeft: "4px solid #16a34a", opacity: 0.9 },
        });
        return;
      }
      if (name !== "alert-triggered" && name !== "alert-escalated" && name !== "alert-updated") return;
      const now = Date.now();
      while (recent.length && (recent[0] ?? 0) < now - FLOOD_WINDOW_MS) recent.shift();
      recent.push(now);
      if (recent.length > FLOOD_LIMIT) {
        flooded += 1;
        const id = "alert-flood";
        toast(
          createElement(AlertFloodToast, {
            count: flooded,
            onOpen: () => {
              toast.dismiss(id);
              navigateRef.current("/alerts?status=open");
            },
          }),
          { id, duration: 8000, style: { ...THEMED, borderLeft: `4px solid ${SEVERITY_COLOUR.high}` } },
        );
        return;
      }
      flooded = 0;
      const id = `alert-${alert.id}-${name}`;
      const loud = alert.severity === "critical" || alert.severity === "high";
      toast(createElement(AlertToast, { event: name, alert, onOpen: open(id) }), {
        id,
        duration: DURATION[alert.severity] ?? 7000,
        className: `alert-toast-${alert.severity}`,
        style: { ...THEMED, borderLeft: `6px solid ${SEVERITY_COLOUR[alert.severity] ?? "#888"}` },
        ariaProps: loud
          ? { role: "alert", "aria-live": "assertive" }
          : { role: "status", "aria-live": "polite" },
      });
    });
  }, [client]);
}
