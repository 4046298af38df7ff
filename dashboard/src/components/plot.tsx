// Plotly (the minimal "basic" bundle: scatter, bar and pie only; heatmaps are drawn as tables) drawn
// with Plotly.react: the chart updates in place, it is never torn down for new data.
import Plotly from "plotly.js-basic-dist-min";
import { useEffect, useRef } from "react";

import { useTheme } from "@/components/theme";

export type PlotData = Partial<Plotly.PlotData>[];
export type PlotLayout = Partial<Plotly.Layout>;

interface Props {
  data: PlotData;
  layout?: PlotLayout;
  height?: number;
  name: string; // accessible name, and the PNG's file name
  onRelayout?: (event: Plotly.PlotRelayoutEvent) => void;
}

export function Plot({ data, layout, height = 260, name, onRelayout }: Props) {
  const ref = useRef<HTMLDivElement>(null);
  const { dark } = useTheme();

  useEffect(() => {
    const el = ref.current;
    if (!el) return;
    const fg = dark ? "#e6e6e6" : "#1d1d1f";
    const grid = dark ? "#333" : "#e5e5e5";
    void Plotly.react(
      el,
      data as Plotly.Data[],
      {
        height,
        margin: { l: 48, r: 16, t: 16, b: 36 },
        paper_bgcolor: "rgba(0,0,0,0)",
        plot_bgcolor: "rgba(0,0,0,0)",
        font: { color: fg, size: 12 },
        showlegend: false,
        ...layout,
        // After the spread: a layout with its own axes keeps the theme's grid colour.
        xaxis: { gridcolor: grid, ...(layout?.xaxis ?? {}) },
        yaxis: { gridcolor: grid, ...(layout?.yaxis ?? {}) },
      },
      { responsive: true, displaylogo: false, toImageButtonOptions: { filename: name } },
    );
  }, [data, layout, height, dark, name]);

  useEffect(() => {
    const el = ref.current as (HTMLDivElement & { on?: Plotly.PlotlyHTMLElement["on"] }) | null;
    if (!el || !onRelayout || !el.on) return;
    el.on("plotly_relayout", onRelayout);
    return () => {
      (el as unknown as Plotly.PlotlyHTMLElement).removeAllListeners?.("plotly_relayout");
    };
  }, [onRelayout]);

  useEffect(() => {
    const el = ref.current;
    return () => {
      if (el) Plotly.purge(el);
    };
  }, []);

  return <div ref={ref} role="img" aria-label={name} className="plot" />;
}

/** Download a chart as PNG (the chart element is found by its accessible name). */
export async function downloadPng(name: string): Promise<void> {
  const el = document.querySelector<HTMLElement>(`[role="img"][aria-label="${CSS.escape(name)}"]`);
  if (el) await Plotly.downloadImage(el, { format: "png", filename: name, width: 1200, height: 500 });
}
