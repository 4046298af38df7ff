/** "3 s ago", "5 min ago", "2 h ago", "4 d ago": short enough for a card. */
export function shortAgo(ms: number): string {
  const s = Math.max(0, Math.floor(ms / 1000));
  if (s < 60) return `${s} s ago`;
  if (s < 3600) return `${Math.floor(s / 60)} min ago`;
  if (s < 86_400) return `${Math.floor(s / 3600)} h ago`;
  return `${Math.floor(s / 86_400)} d ago`;
}

/**
 * Plotly's date axes are time-zone naive: Date objects are drawn in local time, and the ranges
 * it hands back (relayout) are local "yyyy-MM-dd HH:mm:ss.ffff" strings. This reads them back.
 */
export function fromPlotTime(value: unknown): number | null {
  if (value instanceof Date) return value.getTime();
  if (typeof value === "number") return Number.isFinite(value) ? value : null;
  if (typeof value !== "string") return null;
  const m = /^(\d{4})-(\d{2})-(\d{2})(?:[ T](\d{1,2})(?::(\d{2})(?::(\d{2})(?:\.(\d+))?)?)?)?$/.exec(
    value.trim(),
  );
  if (!m) return null;
  const [, y, mo, d, h = "0", mi = "0", s = "0", frac = "0"] = m;
  const ms = Math.round(Number(`0.${frac}`) * 1000);
  const t = new Date(+y!, +mo! - 1, +d!, +h, +mi, +s, ms).getTime();
  return Number.isNaN(t) ? null : t;
}

/** For <input type="datetime-local">: local "yyyy-MM-ddTHH:mm". */
export function toLocalInput(ms: number): string {
  const d = new Date(ms);
  const p = (n: number) => String(n).padStart(2, "0");
  return `${d.getFullYear()}-${p(d.getMonth() + 1)}-${p(d.getDate())}T${p(d.getHours())}:${p(d.getMinutes())}`;
}

export function fromLocalInput(value: string): number | null {
  return value ? fromPlotTime(value) : null;
}
