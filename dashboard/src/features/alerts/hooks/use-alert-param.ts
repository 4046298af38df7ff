// The alert shown in the details dialog is in the address (?alert=<id>): toasts and the
// overview link to it, and Back closes it.
import { useCallback } from "react";
import { useSearchParams } from "react-router-dom";

export function useAlertParam(): [number | null, (id: number) => void, () => void] {
  const [params, setParams] = useSearchParams();
  const raw = params.get("alert");
  const id = raw && /^\d+$/.test(raw) ? Number(raw) : null;
  const open = useCallback(
    (next: number) =>
      setParams((p) => {
        const copy = new URLSearchParams(p);
        copy.set("alert", String(next));
        return copy;
      }),
    [setParams],
  );
  const close = useCallback(
    () =>
      setParams((p) => {
        const copy = new URLSearchParams(p);
        copy.delete("alert");
        return copy;
      }),
    [setParams],
  );
  return [id, open, close];
}
