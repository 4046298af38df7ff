// The configuration form's checks, mirroring the server's (devices/service.py check_config and
// the ConfigUpdate model): a bad value is refused before the request goes out.
import type { ConfigChanges, DeviceStatusValue } from "@/features/devices/api/update-device-config";
import type { DeviceDetails } from "@/types/api";

export const STATUSES: DeviceStatusValue[] = ["active", "inactive", "maintenance", "unregistered"];

export interface ConfigValues {
  normalMin: string;
  normalMax: string;
  alertMin: string;
  alertMax: string;
  intervalMs: string;
  location: string;
  status: string;
  offlineTimeoutS: string;
}

export type ConfigErrors = Partial<Record<keyof ConfigValues, string>>;

/** Every field the form edits (a device's own state alert is not one of them). */
export type FormChanges = Required<Omit<ConfigChanges, "stateAlert">>;

const str = (v: number | null | undefined) => (v === null || v === undefined ? "" : String(v));

export function initialValues(d: DeviceDetails): ConfigValues {
  return {
    normalMin: str(d.normalMin),
    normalMax: str(d.normalMax),
    alertMin: str(d.alertMin),
    alertMax: str(d.alertMax),
    intervalMs: str(d.intervalMs),
    location: d.location,
    status: d.status,
    offlineTimeoutS: str(d.offlineTimeoutS),
  };
}

/** "" = none (null); else a finite number, or undefined when it is not one. */
function num(s: string): number | null | undefined {
  const t = s.trim();
  if (t === "") return null;
  const n = Number(t);
  return Number.isFinite(n) ? n : undefined;
}

/** The errors of a form, by field (empty when it is valid), and the parsed values. */
export function validateConfig(v: ConfigValues): {
  errors: ConfigErrors;
  parsed: FormChanges;
} {
  const errors: ConfigErrors = {};
  const n = {
    normalMin: num(v.normalMin),
    normalMax: num(v.normalMax),
    alertMin: num(v.alertMin),
    alertMax: num(v.alertMax),
  };
  for (const [k, value] of Object.entries(n)) {
    if (value === undefined) errors[k as keyof ConfigValues] = "Enter a number, or leave it empty for none.";
  }
  const { normalMin: lo, normalMax: hi, alertMin: amin, alertMax: amax } = n;
  const set = (x: number | null | undefined): x is number => x !== null && x !== undefined;
  if (set(lo) && set(hi) && lo >= hi) errors.normalMax = `Normal max must be above normal min (${lo}).`;
  if (set(amin) && set(amax) && amin >= amax) errors.alertMax = `Alert max must be above alert min (${amin}).`;
  if (set(amin) && set(lo) && amin > lo) errors.alertMin = `Alert min must not be above normal min (${lo}).`;
  if (set(amax) && set(hi) && amax < hi) errors.alertMax ??= `Alert max must not be below normal max (${hi}).`;

  const interval = Number(v.intervalMs.trim());
  if (v.intervalMs.trim() === "" || !Number.isInteger(interval)) errors.intervalMs = "Enter whole milliseconds.";
  else if (interval < 10) errors.intervalMs = "The interval must be at least 10 ms.";
  else if (interval > 86_400_000) errors.intervalMs = "The interval must be at most 86,400,000 ms (a day).";

  const location = v.location.trim();
  if (!location) errors.location = "Give a location.";
  else if (location.length > 100) errors.location = "At most 100 characters.";

  if (!STATUSES.includes(v.status as DeviceStatusValue)) errors.status = "Pick a status.";

  const timeout = num(v.offlineTimeoutS);
  if (timeout === undefined) errors.offlineTimeoutS = "Enter seconds, or leave it empty for the default.";
  else if (timeout !== null && (timeout <= 0 || timeout > 86_400))
    errors.offlineTimeoutS = "Between 0 (excluded) and 86,400 s.";

  return {
    errors,
    parsed: {
      normalMin: lo ?? null,
      normalMax: hi ?? null,
      alertMin: amin ?? null,
      alertMax: amax ?? null,
      intervalMs: interval,
      location,
      status: v.status as DeviceStatusValue,
      offlineTimeoutS: timeout ?? null,
    },
  };
}

/** Only what differs from the device as it is. */
export function changesFrom(d: DeviceDetails, parsed: FormChanges): ConfigChanges {
  const out: ConfigChanges = {};
  const current: FormChanges = {
    normalMin: d.normalMin,
    normalMax: d.normalMax,
    alertMin: d.alertMin,
    alertMax: d.alertMax,
    intervalMs: d.intervalMs,
    location: d.location,
    status: d.status as DeviceStatusValue,
    offlineTimeoutS: d.offlineTimeoutS,
  };
  for (const k of Object.keys(parsed) as (keyof FormChanges)[]) {
    if (parsed[k] !== current[k]) (out as Record<string, unknown>)[k] = parsed[k];
  }
  return out;
}
