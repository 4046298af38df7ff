// Silences: the ones not over yet; operators create them (a device and/or an alert type, for
// a duration) and end them. Silenced alerts are still recorded, not notified.
import { useState, type FormEvent } from "react";
import toast from "react-hot-toast";

import { useCreateSilenceMutation } from "@/features/alerts/api/create-silence";
import { useDeleteSilenceMutation } from "@/features/alerts/api/delete-silence";
import { useSilencesListQuery } from "@/features/alerts/api/get-silences";
import { useCanAct } from "@/features/alerts/components/alert-actions";
import { ALERT_TYPES, typeLabel } from "@/features/alerts/types";
import {
  DURATION_UNITS,
  validateSilence,
  type DurationUnit,
  type SilenceFormErrors,
  type SilenceFormValues,
} from "@/features/alerts/utils/silence-form";
import { errorMessage } from "@/lib/api-client";
import type { AlertType } from "@/types/api";
import { formatTime } from "@/utils/format";

import "@/features/alerts/alerts.css";

const EMPTY: SilenceFormValues = { deviceId: "", type: "", duration: "60", unit: "minutes", reason: "" };

export function SilenceForm({ defaultDeviceId = "" }: { defaultDeviceId?: string }) {
  const [values, setValues] = useState<SilenceFormValues>({ ...EMPTY, deviceId: defaultDeviceId });
  const [errors, setErrors] = useState<SilenceFormErrors>({});
  const [create, { isLoading, error }] = useCreateSilenceMutation();
  const set = (change: Partial<SilenceFormValues>) => setValues((v) => ({ ...v, ...change }));

  async function submit(e: FormEvent) {
    e.preventDefault();
    const checked = validateSilence(values);
    if (!checked.ok) {
      setErrors(checked.errors);
      return;
    }
    setErrors({});
    const result = await create(checked.body);
    if ("data" in result) {
      toast.success("Silence created");
      setValues({ ...EMPTY, deviceId: defaultDeviceId });
    }
  }

  const fieldError = (key: keyof SilenceFormErrors) =>
    errors[key] ? (
      <span id={`silence-${key}-error`} className="error-text field-error">
        {errors[key]}
      </span>
    ) : null;

  return (
    <form className="silence-form" aria-label="New silence" onSubmit={submit} noValidate>
      <div className="field">
        <label>
          Device
          <input
            value={values.deviceId}
            onChange={(e) => set({ deviceId: e.target.value })}
            placeholder="e.g. device-001"
            aria-invalid={Boolean(errors.deviceId || errors.target)}
            aria-describedby={errors.deviceId ? "silence-deviceId-error" : undefined}
          />
        </label>
        {fieldError("deviceId")}
      </div>
      <label>
        Alert type
        <select value={values.type} onChange={(e) => set({ type: e.target.value as AlertType | "" })}>
          <option value="">Every type</option>
          {ALERT_TYPES.map((t) => (
            <option key={t} value={t}>
              {typeLabel(t)}
            </option>
          ))}
        </select>
      </label>
      <div className="field">
        <label htmlFor="silence-duration">Duration</label>
        <span className="row tight">
          <input
            id="silence-duration"
            type="number"
            min="0"
            step="any"
            value={values.duration}
            onChange={(e) => set({ duration: e.target.value })}
            aria-invalid={Boolean(errors.duration)}
            aria-describedby={errors.duration ? "silence-duration-error" : undefined}
            size={6}
          />
          <select
            aria-label="Duration unit"
            value={values.unit}
            onChange={(e) => set({ unit: e.target.value as DurationUnit })}
          >
            {Object.keys(DURATION_UNITS).map((u) => (
              <option key={u} value={u}>
                {u}
              </option>
            ))}
          </select>
        </span>
        {fieldError("duration")}
      </div>
      <div className="field grow">
        <label>
          Reason
          <input
            value={values.reason}
            onChange={(e) => set({ reason: e.target.value })}
            maxLength={500}
            placeholder="optional"
            aria-invalid={Boolean(errors.reason)}
          />
        </label>
        {fieldError("reason")}
      </div>
      <button type="submit" disabled={isLoading}>
        {isLoading ? "Creating…" : "Create silence"}
      </button>
      {errors.target ? (
        <p role="alert" className="error-text form-error">
          {errors.target}
        </p>
      ) : null}
      {Object.keys(errors).length && !errors.target ? (
        <p role="alert" className="error-text form-error">
          Check the highlighted fields.
        </p>
      ) : null}
      {error ? (
        <p role="alert" className="error-text form-error">
          The silence could not be created: {errorMessage(error)}
        </p>
      ) : null}
    </form>
  );
}

function EndSilence({ id }: { id: number }) {
  const [remove, { isLoading }] = useDeleteSilenceMutation();
  return (
    <button
      type="button"
      className="secondary"
      disabled={isLoading}
      aria-label={`End silence ${id}`}
      onClick={async () => {
        const result = await remove(id);
        if ("error" in result) toast.error(`The silence could not be ended: ${errorMessage(result.error)}`);
      }}
    >
      End now
    </button>
  );
}

export function SilencesPanel() {
  const { data, error, isLoading } = useSilencesListQuery(undefined, { pollingInterval: 60_000 });
  const operator = useCanAct();
  return (
    <section className="panel silences" aria-labelledby="silences-title">
      <h2 id="silences-title">Silences</h2>
      <p className="muted">
        A silenced alert is still recorded and listed, but not notified.
      </p>
      {operator ? <SilenceForm /> : null}
      {error ? (
        <p role="alert" className="error-text">
          Silences could not be loaded: {errorMessage(error)}
        </p>
      ) : null}
      {isLoading ? <p>Loading silences…</p> : null}
      {data ? (
        data.length === 0 ? (
          <p>No silences in force.</p>
        ) : (
          <div className="table-scroll">
            <table>
              <caption className="sr-only">Silences in force</caption>
              <thead>
                <tr>
                  <th scope="col">Device</th>
                  <th scope="col">Type</th>
                  <th scope="col">From</th>
                  <th scope="col">Until</th>
                  <th scope="col">Reason</th>
                  <th scope="col">By</th>
                  {operator ? <th scope="col">End</th> : null}
                </tr>
              </thead>
              <tbody>
                {data.map((s) => (
                  <tr key={s.id} data-silence-id={s.id}>
                    <td>{s.deviceId ?? "every device"}</td>
                    <td>{s.alertType ? typeLabel(s.alertType) : "every type"}</td>
                    <td>{formatTime(s.startsAt)}</td>
                    <td>{formatTime(s.endsAt)}</td>
                    <td>{s.reason ?? ""}</td>
                    <td>{s.createdBy}</td>
                    {operator ? (
                      <td>
                        <EndSilence id={s.id} />
                      </td>
                    ) : null}
                  </tr>
                ))}
              </tbody>
            </table>
          </div>
        )
      ) : null}
    </section>
  );
}
