import type { PlotLayout } from "@/components/plot";
import type { Thresholds } from "@/types/api";

const CRIT = "#dc2626";
const OK = "#16a34a";

/** Threshold lines (alertMin/alertMax) and the normal range as a band, for both charts. */
export function thresholdShapes(t: Thresholds): Pick<PlotLayout, "shapes" | "annotations"> {
  const shapes: NonNullable<PlotLayout["shapes"]> = [];
  const annotations: NonNullable<PlotLayout["annotations"]> = [];
  const label = (y: number, text: string, color: string) =>
    annotations.push({
      xref: "paper",
      x: 1,
      xanchor: "right",
      yref: "y",
      y,
      yanchor: "bottom",
      text,
      showarrow: false,
      font: { size: 10, color },
    });
  const line = (y: number, color: string, dash: "dash" | "dot") =>
    shapes.push({
      type: "line",
      xref: "paper",
      x0: 0,
      x1: 1,
      yref: "y",
      y0: y,
      y1: y,
      line: { color, width: 1, dash },
      layer: "below",
    });
  if (t.normalMin !== null && t.normalMax !== null) {
    shapes.push({
      type: "rect",
      xref: "paper",
      x0: 0,
      x1: 1,
      yref: "y",
      y0: t.normalMin,
      y1: t.normalMax,
      fillcolor: "rgba(22,163,74,0.08)",
      line: { width: 0 },
      layer: "below",
    });
  } else {
    if (t.normalMin !== null) line(t.normalMin, OK, "dot");
    if (t.normalMax !== null) line(t.normalMax, OK, "dot");
  }
  if (t.alertMin !== null) {
    line(t.alertMin, CRIT, "dash");
    label(t.alertMin, "alert min", CRIT);
  }
  if (t.alertMax !== null) {
    line(t.alertMax, CRIT, "dash");
    label(t.alertMax, "alert max", CRIT);
  }
  return { shapes, annotations };
}

export function pickThresholds(t: Thresholds): Thresholds {
  return { normalMin: t.normalMin, normalMax: t.normalMax, alertMin: t.alertMin, alertMax: t.alertMax };
}
