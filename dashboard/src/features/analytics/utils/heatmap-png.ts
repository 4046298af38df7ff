// The heatmap as a PNG: the same grid drawn on a canvas (it is HTML, not a Plotly chart).
import { format } from "date-fns";

import type { Heatmap } from "@/features/analytics/types";
import { colour, extent, textColour } from "@/features/analytics/utils/stats";

export function drawHeatmap(data: Heatmap, title: string, dark: boolean): HTMLCanvasElement | null {
  const cellW = data.hours.length > 48 ? 12 : 44;
  const cellH = 22;
  const left = 130;
  const top = 64;
  const canvas = document.createElement("canvas");
  canvas.width = left + cellW * data.hours.length + 20;
  canvas.height = top + cellH * data.devices.length + 20;
  const g = canvas.getContext("2d");
  if (!g) return null;
  g.fillStyle = dark ? "#171a21" : "#ffffff";
  g.fillRect(0, 0, canvas.width, canvas.height);
  g.fillStyle = dark ? "#e6e6e6" : "#1d1d1f";
  g.font = "bold 15px system-ui, sans-serif";
  g.fillText(title, 10, 22);
  g.font = "11px system-ui, sans-serif";
  const every = data.hours.length > 72 ? 6 : data.hours.length > 24 ? 3 : 1;
  data.hours.forEach((h, j) => {
    if (j % every === 0) g.fillText(format(new Date(h), "HH:00"), left + j * cellW, top - 8);
  });
  data.devices.forEach((device, i) => {
    const row = data.values[i] ?? [];
    const range = extent(row);
    g.fillStyle = dark ? "#e6e6e6" : "#1d1d1f";
    g.fillText(device, 10, top + i * cellH + 15);
    row.forEach((v, j) => {
      const x = left + j * cellW;
      const y = top + i * cellH;
      if (v === null || !range) {
        g.fillStyle = dark ? "#2a2f3a" : "#eeeeee";
        g.fillRect(x, y, cellW - 1, cellH - 1);
        return;
      }
      const t = range[1] > range[0] ? (v - range[0]) / (range[1] - range[0]) : 0.5;
      g.fillStyle = colour(t);
      g.fillRect(x, y, cellW - 1, cellH - 1);
      if (cellW >= 40) {
        g.fillStyle = textColour(t);
        g.fillText(v.toFixed(Math.abs(v) >= 100 ? 0 : 1), x + 4, y + 15);
      }
    });
  });
  return canvas;
}

export function downloadHeatmapPng(data: Heatmap, name: string, dark: boolean): void {
  const canvas = drawHeatmap(data, name, dark);
  if (!canvas) return;
  const a = Object.assign(document.createElement("a"), {
    href: canvas.toDataURL("image/png"),
    download: `${name}.png`,
  });
  a.click();
}

export function heatmapCsvRows(data: Heatmap): Record<string, unknown>[] {
  return data.devices.map((device, i) => ({
    deviceId: device,
    ...Object.fromEntries(data.hours.map((h, j) => [h, data.values[i]?.[j] ?? ""])),
  }));
}
