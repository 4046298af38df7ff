import { formatValue } from "@/utils/format";

/**
 * Sensor types whose readings are states, 0 or 1 (an MQTT device's boolean channels, e.g. an
 * F2 controller's door sensor): what 0 and 1 mean, for labels and the charts' axis.
 */
export const STATE_LABELS: Readonly<Record<string, readonly [string, string]>> = {
  door: ["closed", "open"],
  strike: ["locked", "released"],
  button: ["released", "pressed"],
  motion: ["clear", "detected"],
  siren: ["off", "sounding"],
};

export function stateLabels(type: string | null | undefined): readonly [string, string] | null {
  return (type && STATE_LABELS[type]) || null;
}

/** A reading as a person reads it: "open" for a door at 1, "read" for a QR/NFC read (its
 * value is always 1), else the number and its unit. */
export function displayValue(
  type: string | null | undefined,
  value: number | null | undefined,
  unit?: string | null,
): string {
  if (value === null || value === undefined || Number.isNaN(value)) return formatValue(value);
  const labels = stateLabels(type);
  if (labels) return value >= 0.5 ? labels[1] : labels[0];
  if (type === "access_read") return "read";
  return formatValue(value, unit);
}

/** Plotly settings for a state's chart: steps between 0 and 1, the axis labelled by state. */
export function stateAxis(type: string | null | undefined) {
  const labels = stateLabels(type);
  if (!labels) return null;
  return {
    line: { shape: "hv" as const },
    yaxis: {
      tickvals: [0, 1],
      ticktext: [labels[0], labels[1]],
      range: [-0.1, 1.1],
      zeroline: false,
    },
  };
}
