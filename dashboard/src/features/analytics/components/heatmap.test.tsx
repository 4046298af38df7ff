import { screen, within } from "@testing-library/react";
import { http } from "msw";

import { DeviceHeatmap } from "@/features/analytics/components/device-heatmap";
import { Heatmap, heatmapRows } from "@/features/analytics/components/heatmap";
import { envelope, makeSummary } from "@/features/analytics/testing";
import { renderWithApp } from "@/test/render";
import { server } from "@/test/server";

function rowOf(deviceId: string): HTMLElement {
  const row = document.querySelector<HTMLElement>(`tr[data-device-id="${deviceId}"]`);
  if (!row) throw new Error(`no row for ${deviceId}`);
  return row;
}

test("the heatmap renders one row per device and one cell per hour with its value", () => {
  const { heatmap } = makeSummary();
  renderWithApp(<Heatmap data={heatmap} units={{ "device-001": "°C" }} caption="Heat" />);
  const table = screen.getByRole("table", { name: "Heat" });
  expect(within(table).getAllByRole("columnheader")).toHaveLength(1 + 4);
  const cells = within(rowOf("device-001")).getAllByRole("cell");
  expect(cells.map((c) => c.textContent)).toEqual(["20.50", "21.50", "22.50", "23.50"]);
  expect(cells[3]).toHaveAttribute("title", expect.stringContaining("23.50 °C"));
  const second = within(rowOf("device-002")).getAllByRole("cell");
  expect(second.map((c) => c.textContent)).toEqual(["55.00", "no data", "45.00", "no data"]);
  expect(second[1]).toHaveClass("empty");
  // Each row is coloured on its own scale: its lowest and highest hours are the two ends.
  expect(cells[0]!.style.background).toBe(second[2]!.style.background);
  expect(cells[3]!.style.background).toBe(second[0]!.style.background);
});

test("rows are scaled on their own range", () => {
  const rows = heatmapRows({ hours: ["a", "b", "c"], devices: ["d"], values: [[10, 15, 20]] });
  expect(rows[0]!.map((c) => c.t)).toEqual([0, 0.5, 1]);
});

test("the heatmap panel fetches the summary for the period", async () => {
  const asked: string[] = [];
  server.use(
    http.get("/api/analytics/summary", ({ request }) => {
      asked.push(new URL(request.url).searchParams.get("hours") ?? "");
      return Response.json(envelope(makeSummary()));
    }),
  );
  renderWithApp(<DeviceHeatmap hours={4} />);
  expect(await screen.findByRole("table", { name: /Hourly averages by device, last 4 hours/ })).toBeInTheDocument();
  expect(within(rowOf("device-001")).getAllByRole("cell")[1]).toHaveTextContent("21.50");
  expect(asked).toEqual(["4"]);
});

test("no data yet says so", () => {
  renderWithApp(<Heatmap data={{ hours: [], devices: [], values: [] }} caption="Heat" />);
  expect(screen.getByText("No hourly data in this period yet.")).toBeInTheDocument();
});
