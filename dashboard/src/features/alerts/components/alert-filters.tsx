// Status, severity, device, type and time range. Selects apply at once; the device id applies
// after a pause in typing (and only when it is a valid id or empty).
import { format } from "date-fns";
import { useEffect, useState } from "react";

import {
  ALERT_TYPES,
  DEVICE_ID_PATTERN,
  SEVERITIES,
  STATUSES,
  typeLabel,
  type StatusFilter,
} from "@/features/alerts/types";
import {
  DEFAULT_STATUS,
  RANGES,
  type AlertFilters,
  type RangeKey,
} from "@/features/alerts/utils/filters";
import type { AlertType, Severity } from "@/types/api";

import "@/features/alerts/alerts.css";

const DEVICE_DEBOUNCE_MS = 350;

function toLocalInput(iso: string): string {
  return iso ? format(new Date(iso), "yyyy-MM-dd'T'HH:mm") : "";
}

function fromLocalInput(value: string): string {
  const t = Date.parse(value); // a datetime-local value is local time
  return Number.isNaN(t) ? "" : new Date(t).toISOString();
}

export function AlertFiltersForm({
  value,
  onChange,
  deviceIds = [],
}: {
  value: AlertFilters;
  onChange: (change: Partial<AlertFilters>) => void;
  deviceIds?: string[];
}) {
  const [device, setDevice] = useState(value.deviceId);
  const [shown, setShown] = useState(value.deviceId);
  if (shown !== value.deviceId) {
    // The address changed (Back, a reset): show it.
    setShown(value.deviceId);
    setDevice(value.deviceId);
  }
  const deviceValid = device === "" || DEVICE_ID_PATTERN.test(device.trim());

  useEffect(() => {
    const next = device.trim();
    if (next === value.deviceId || !(next === "" || DEVICE_ID_PATTERN.test(next))) return;
    const timer = setTimeout(() => onChange({ deviceId: next }), DEVICE_DEBOUNCE_MS);
    return () => clearTimeout(timer);
  }, [device, value.deviceId, onChange]);

  const custom = value.range === "custom";
  const invalidRange = custom && value.from && value.to && value.from >= value.to;

  return (
    <form className="alert-filters" aria-label="Alert filters" onSubmit={(e) => e.preventDefault()}>
      <label>
        Status
        <select value={value.status} onChange={(e) => onChange({ status: e.target.value as StatusFilter })}>
          <option value="all">All (active and history)</option>
          <option value="open">Open (not resolved)</option>
          {STATUSES.map((s) => (
            <option key={s} value={s}>
              {s[0]?.toUpperCase()}
              {s.slice(1)}
            </option>
          ))}
        </select>
      </label>
      <label>
        Severity
        <select
          value={value.severity}
          onChange={(e) => onChange({ severity: e.target.value as Severity | "" })}
        >
          <option value="">Any severity</option>
          {SEVERITIES.map((s) => (
            <option key={s} value={s}>
              {s}
            </option>
          ))}
        </select>
      </label>
      <label>
        Device
        <input
          value={device}
          onChange={(e) => setDevice(e.target.value)}
          placeholder="any device"
          list="alert-filter-devices"
          aria-invalid={!deviceValid}
          aria-describedby={deviceValid ? undefined : "alert-filter-device-error"}
          size={14}
        />
        <datalist id="alert-filter-devices">
          {deviceIds.map((d) => (
            <option key={d} value={d} />
          ))}
        </datalist>
      </label>
      <label>
        Type
        <select value={value.type} onChange={(e) => onChange({ type: e.target.value as AlertType | "" })}>
          <option value="">Any type</option>
          {ALERT_TYPES.map((t) => (
            <option key={t} value={t}>
              {typeLabel(t)}
            </option>
          ))}
        </select>
      </label>
      <label>
        Time range
        <select
          value={value.range}
          onChange={(e) => {
            const range = e.target.value as RangeKey;
            onChange(range === "custom" ? { range } : { range, from: "", to: "" });
          }}
        >
          <option value="">Any time</option>
          {Object.entries(RANGES).map(([key, r]) => (
            <option key={key} value={key}>
              {r.label}
            </option>
          ))}
          <option value="custom">Custom…</option>
        </select>
      </label>
      {custom ? (
        <>
          <label>
            From
            <input
              type="datetime-local"
              value={toLocalInput(value.from)}
              onChange={(e) => onChange({ from: fromLocalInput(e.target.value) })}
            />
          </label>
          <label>
            To
            <input
              type="datetime-local"
              value={toLocalInput(value.to)}
              onChange={(e) => onChange({ to: fromLocalInput(e.target.value) })}
            />
          </label>
        </>
      ) : null}
      <button
        type="button"
        className="secondary"
        onClick={() => {
          setDevice("");
          onChange({ status: DEFAULT_STATUS, severity: "", deviceId: "", type: "", range: "", from: "", to: "" });
        }}
      >
        Clear filters
      </button>
      {!deviceValid ? (
        <p id="alert-filter-device-error" className="error-text" role="alert">
          A device id is 1–64 letters, digits or _ . : -
        </p>
      ) : null}
      {invalidRange ? (
        <p className="error-text" role="alert">
          “From” must be before “To”.
        </p>
      ) : null}
    </form>
  );
}
