import { useSelector } from "react-redux";

import type { RootState } from "@/app/store";

const LABEL = {
  connected: "Live",
  connecting: "Connecting…",
  reconnecting: "Reconnecting… (data may be stale)",
  disconnected: "Offline (data may be stale)",
} as const;

export function ConnectionBadge() {
  const state = useSelector((s: RootState) => s.live.connection);
  const error = useSelector((s: RootState) => s.live.error);
  return (
    <span className={`badge conn-${state}`} role="status" aria-live="polite" title={error ?? ""}>
      <span className="dot" aria-hidden /> {LABEL[state]}
    </span>
  );
}
