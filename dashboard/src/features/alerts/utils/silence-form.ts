// The silence form's rules (the server's, checked before sending): a device, a type or both;
// a duration above zero and at most 366 days; a reason of at most 500 characters.
import { ALERT_TYPES, DEVICE_ID_PATTERN, type NewSilence } from "@/features/alerts/types";
import type { AlertType } from "@/types/api";

export const DURATION_UNITS = { minutes: 60, hours: 3600, days: 86400 } as const;
export type DurationUnit = keyof typeof DURATION_UNITS;
export const MAX_DURATION_S = 366 * 86400;

export interface SilenceFormValues {
  deviceId: string;
  type: AlertType | "";
  duration: string;
  unit: DurationUnit;
  reason: string;
}

export type SilenceFormErrors = Partial<Record<"target" | "deviceId" | "duration" | "reason", string>>;

export function validateSilence(
  v: SilenceFormValues,
): { ok: true; body: NewSilence } | { ok: false; errors: SilenceFormErrors } {
  const errors: SilenceFormErrors = {};
  const deviceId = v.deviceId.trim();
  if (!deviceId && !v.type) errors.target = "Choose a device, an alert type, or both.";
  if (deviceId && !DEVICE_ID_PATTERN.test(deviceId))
    errors.deviceId = "A device id is 1–64 letters, digits or _ . : -";
  if (v.type && !ALERT_TYPES.includes(v.type)) errors.target = "Unknown alert type.";
  const amount = Number(v.duration);
  const seconds = amount * DURATION_UNITS[v.unit];
  if (v.duration.trim() === "" || !Number.isFinite(amount) || amount <= 0)
    errors.duration = "The duration must be a number above zero.";
  else if (seconds > MAX_DURATION_S) errors.duration = "A silence lasts at most 366 days.";
  if (v.reason.length > 500) errors.reason = "The reason is at most 500 characters.";
  if (Object.keys(errors).length) return { ok: false, errors };
  const body: NewSilence = { durationS: seconds };
  if (deviceId) body.deviceId = deviceId;
  if (v.type) body.type = v.type;
  if (v.reason.trim()) body.reason = v.reason.trim();
  return { ok: true, body };
}
