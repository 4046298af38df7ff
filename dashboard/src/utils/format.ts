import { formatDistanceToNowStrict, format as formatDate } from "date-fns";

export function formatValue(value: number | null | undefined, unit?: string | null): string {
  if (value === null || value === undefined || Number.isNaN(value)) return "–";
  const digits = Math.abs(value) >= 100 ? 1 : 2;
  return `${value.toFixed(digits)}${unit ? ` ${unit}` : ""}`;
}

export function formatTime(iso: string | null | undefined): string {
  return iso ? formatDate(new Date(iso), "yyyy-MM-dd HH:mm:ss") : "–";
}

export function ago(iso: string | null | undefined): string {
  return iso ? `${formatDistanceToNowStrict(new Date(iso))} ago` : "never";
}
