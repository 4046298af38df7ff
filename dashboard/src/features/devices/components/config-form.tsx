import "@/features/devices/devices.css";

import { useId, useState, type FormEvent, type ReactNode } from "react";
import toast from "react-hot-toast";
import { useSelector } from "react-redux";

import { useUpdateDeviceConfigMutation } from "@/features/devices/api/update-device-config";
import {
  changesFrom,
  initialValues,
  STATUSES,
  validateConfig,
  type ConfigErrors,
  type ConfigValues,
} from "@/features/devices/utils/config-validation";
import { errorMessage } from "@/lib/api-client";
import { can, selectSession } from "@/lib/session";
import type { DeviceDetails } from "@/types/api";

interface Props {
  device: DeviceDetails;
}

/** Thresholds, interval, location, status and offline timeout: for admins only. */
export function ConfigForm({ device }: Props) {
  const session = useSelector(selectSession);
  if (!can(session, "admin")) return null;
  // A new configuration (saved here or elsewhere) starts the form afresh.
  return <ConfigFormInner key={`${device.deviceId}@${device.updatedAt}`} device={device} />;
}

function ConfigFormInner({ device }: Props) {
  const [values, setValues] = useState<ConfigValues>(() => initialValues(device));
  const [errors, setErrors] = useState<ConfigErrors>({});
  const [notice, setNotice] = useState<string | null>(null);
  const [update, { isLoading, error, reset }] = useUpdateDeviceConfigMutation();
  const id = useId();

  function set<K extends keyof ConfigValues>(key: K, value: string) {
    setValues((v) => ({ ...v, [key]: value }));
    setNotice(null);
  }

  async function submit(e: FormEvent) {
    e.preventDefault();
    reset();
    const { errors: found, parsed } = validateConfig(values);
    setErrors(found);
    if (Object.keys(found).length) return;
    const changes = changesFrom(device, parsed);
    if (!Object.keys(changes).length) {
      setNotice("Nothing to save: no value changed.");
      return;
    }
    const result = await update({ deviceId: device.deviceId, changes });
    if ("data" in result) toast.success(`${device.deviceId}: configuration saved (applied within 10 s)`);
  }

  function field(key: keyof ConfigValues, label: string, input: ReactNode, hint?: string) {
    const err = errors[key];
    return (
      <div className={`field${err ? " invalid" : ""}`}>
        <label htmlFor={`${id}-${key}`}>{label}</label>
        {input}
        {err ? (
          <span id={`${id}-${key}-error`} className="error-text small">
            {err}
          </span>
        ) : hint ? (
          <span className="muted small">{hint}</span>
        ) : null}
      </div>
    );
  }

  function numberInput(key: keyof ConfigValues, extra: { step?: string; min?: string } = {}) {
    return (
      <input
        id={`${id}-${key}`}
        name={key}
        type="text"
        inputMode="decimal"
        value={values[key]}
        onChange={(e) => set(key, e.target.value)}
        aria-invalid={errors[key] ? true : undefined}
        aria-describedby={errors[key] ? `${id}-${key}-error` : undefined}
        {...extra}
      />
    );
  }

  const problems = Object.values(errors).length;
  return (
    <section className="panel config-panel" aria-labelledby={`${id}-heading`}>
      <h2 id={`${id}-heading`}>Configuration</h2>
      <form className="config-form" onSubmit={submit} aria-label="Device configuration" noValidate>
        <fieldset>
          <legend>Thresholds{device.unit ? ` (${device.unit})` : ""}</legend>
          <div className="field-grid">
            {field("alertMin", "Alert min", numberInput("alertMin"), "empty: none")}
            {field("normalMin", "Normal min", numberInput("normalMin"))}
            {field("normalMax", "Normal max", numberInput("normalMax"))}
            {field("alertMax", "Alert max", numberInput("alertMax"), "empty: none")}
          </div>
        </fieldset>
        <fieldset>
          <legend>Device</legend>
          <div className="field-grid">
            {field("intervalMs", "Interval (ms)", numberInput("intervalMs"), "at least 10 ms")}
            {field(
              "offlineTimeoutS",
              "Offline after (s)",
              numberInput("offlineTimeoutS"),
              "empty: the default (30 s)",
            )}
            {field(
              "location",
              "Location",
              <input
                id={`${id}-location`}
                name="location"
                value={values.location}
                maxLength={100}
                onChange={(e) => set("location", e.target.value)}
                aria-invalid={errors.location ? true : undefined}
                aria-describedby={errors.location ? `${id}-location-error` : undefined}
              />,
            )}
            {field(
              "status",
              "Status",
              <select
                id={`${id}-status`}
                name="status"
                value={values.status}
                onChange={(e) => set("status", e.target.value)}
              >
                {STATUSES.map((s) => (
                  <option key={s} value={s}>
                    {s}
                  </option>
                ))}
              </select>,
            )}
          </div>
        </fieldset>
        {problems ? (
          <p role="alert" className="error-text">
            {problems === 1 ? "One value needs" : `${problems} values need`} fixing.
          </p>
        ) : null}
        {error ? (
          <p role="alert" className="error-text">
            Not saved: {errorMessage(error)}
          </p>
        ) : null}
        {notice ? (
          <p role="status" className="muted">
            {notice}
          </p>
        ) : null}
        <div className="dv-actions">
          <button type="submit" disabled={isLoading}>
            {isLoading ? "Saving…" : "Save configuration"}
          </button>
          <button
            type="button"
            className="secondary"
            onClick={() => {
              setValues(initialValues(device));
              setErrors({});
              setNotice(null);
              reset();
            }}
          >
            Reset
          </button>
        </div>
      </form>
    </section>
  );
}
