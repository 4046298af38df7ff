import { screen, waitFor, within } from "@testing-library/react";
import userEvent from "@testing-library/user-event";
import { http } from "msw";

import { AlertsBreakdown } from "@/features/analytics/components/alerts-breakdown";
import { ComparisonChart, comparisonRows } from "@/features/analytics/components/comparison-chart";
import { DeviceTrendChart } from "@/features/analytics/components/device-trend-chart";
import { SystemUtilisation, sampleOf } from "@/features/analytics/components/system-utilisation";
import { TrendsTable, trendRows } from "@/features/analytics/components/trends-table";
import { envelope, HOURS, makeSummary } from "@/features/analytics/testing";
import type { DeviceTrend, SystemMetrics } from "@/features/analytics/types";
import { renderWithApp } from "@/test/render";
import { server } from "@/test/server";

// Plotly needs a real browser; the charts' data is checked through the mock.
const plots = vi.hoisted(() => new Map<string, unknown[]>());
const layouts = vi.hoisted(() => new Map<string, unknown>());
vi.mock("@/components/plot", () => ({
  Plot: ({ name, data, layout }: { name: string; data: unknown[]; layout: unknown }) => {
    plots.set(name, data);
    layouts.set(name, layout);
    return <div role="img" aria-label={name} />;
  },
  downloadPng: vi.fn(),
}));

beforeEach(() => plots.clear());

function serveSummary() {
  server.use(http.get("/api/analytics/summary", () => Response.json(envelope(makeSummary()))));
}

test("trends: slope per hour and change from the hourly averages", async () => {
  serveSummary();
  renderWithApp(<TrendsTable hours={4} />);
  const row = await screen.findByRole("row", { name: /device-001/ });
  const cells = within(row).getAllByRole("cell");
  expect(cells.map((c) => c.textContent)).toEqual([
    "temperature",
    "21.75 °C",
    "19.50",
    "24.25",
    (14400).toLocaleString(),
    "100 %",
    "+1.00",
    "+3.00",
    "↑ rising",
  ]);
  const rows = trendRows(makeSummary());
  expect(rows[1]).toMatchObject({ deviceId: "device-002", slopePerHour: -5, change: -10, direction: "falling" });
  await userEvent.type(screen.getByLabelText("Filter"), "humid");
  await waitFor(() => expect(screen.queryByRole("row", { name: /device-001/ })).toBeNull());
  expect(screen.getByRole("row", { name: /device-002/ })).toBeInTheDocument();
});

test("the device trend chart shows the first device's trend", async () => {
  serveSummary();
  const trend: DeviceTrend = {
    deviceId: "device-001",
    hours: 4,
    unit: "°C",
    trend1h: { trend: "increasing", slope: 0.1, avg: 23 },
    trend24h: { trend: "stable", slope: 0, avg: 22 },
    hourly: HOURS.map((hour, i) => ({ hour, avg: 20 + i, min: 19 + i, max: 21 + i, count: 3600, std: 0.2 })),
    slopePerHour: 1,
    change: 3,
  };
  server.use(http.get("/api/analytics/trends/:id", () => Response.json(envelope(trend))));
  renderWithApp(<DeviceTrendChart hours={4} />);
  expect(await screen.findByText("1.00 °C/h")).toBeInTheDocument();
  expect(screen.getByText("increasing")).toBeInTheDocument();
  await waitFor(() => expect(plots.get("Device trend")).toBeDefined());
  const traces = plots.get("Device trend") as { name: string; y: unknown[] }[];
  expect(traces.find((t) => t.name === "device-001")?.y).toEqual([20, 21, 22, 23]);
  // the whole period on the x axis, however few hours have data (one, right after a start)
  const summary = makeSummary();
  expect((layouts.get("Device trend") as { xaxis: { range: string[] } }).xaxis.range).toEqual([
    summary.from,
    summary.to,
  ]);
});

test("comparison: every device on its normal range's scale", async () => {
  serveSummary();
  server.use(
    http.get("/api/devices", () =>
      Response.json(
        envelope({
          devices: [
            { deviceId: "device-001", type: "temperature", unit: "°C", thresholds: { normalMin: 18, normalMax: 26, alertMin: 10, alertMax: 35 } },
            { deviceId: "device-002", type: "humidity", unit: "%", thresholds: { normalMin: 30, normalMax: 70, alertMin: 20, alertMax: 80 } },
          ],
        }),
      ),
    ),
  );
  renderWithApp(<ComparisonChart hours={4} />);
  await waitFor(() => expect(plots.get("Devices compared to their normal range")).toBeDefined());
  const [bars, dots] = plots.get("Devices compared to their normal range") as { base?: number[]; y: number[] }[];
  expect(dots!.y).toEqual([46.875, 50]);
  expect(bars!.base).toEqual([18.75, 25]);
  const rows = comparisonRows(makeSummary().devices, []);
  expect(rows.map((r) => r.basis)).toEqual(["own range", "own range"]);
});

test("alerts breakdown by type and severity", async () => {
  serveSummary();
  renderWithApp(<AlertsBreakdown hours={4} />);
  expect(await screen.findByText("3 alerts")).toBeInTheDocument();
  const [byType, bySeverity] = plots.get("Alerts by type and severity") as { x: number[]; y: string[] }[];
  expect(byType).toMatchObject({ y: ["device offline", "threshold exceeded"], x: [1, 2] });
  expect(bySeverity).toMatchObject({ y: ["critical", "high"], x: [1, 2] });
});

const METRICS: SystemMetrics = {
  version: "1.2.3",
  process: { pid: 7, uptimeS: 3725, maxRssMiB: 180.5, cpuUserS: 12.5, cpuSystemS: 2.5 },
  host: { loadAverage: [1.5, 1.2, 0.9], cpus: 4 },
  redis: { usedMemoryMiB: 12.3, connectedClients: 9, opsPerSecond: 1500, version: "7.2.0" },
  database: { sizeMiB: 512.44, connections: 11, version: "15.6" },
};

test("system utilisation shows process, host, Redis and PostgreSQL figures", async () => {
  server.use(http.get("/api/metrics/system", () => Response.json(envelope(METRICS))));
  renderWithApp(<SystemUtilisation />);
  expect(await screen.findByText("1 h 2 min")).toBeInTheDocument();
  expect(screen.getByText("180.5 MiB")).toBeInTheDocument();
  expect(screen.getByText("1.50 / 1.20 / 0.90 on 4 CPUs")).toBeInTheDocument();
  expect(screen.getByText("1500")).toBeInTheDocument();
  expect(screen.getByText("512.4 MiB")).toBeInTheDocument();
  expect(screen.getByRole("meter", { name: "Host load (1 min) per CPU" })).toHaveAttribute("value", "1.5");
});

test("process CPU % comes from two samples of the same process", () => {
  const later = { ...METRICS, process: { ...METRICS.process, cpuUserS: 14.5, cpuSystemS: 3.5 } };
  expect(sampleOf(later, { m: METRICS, t: 0 }, 10_000).processCpuPct).toBeCloseTo(30);
  const other = { ...later, process: { ...later.process, pid: 8 } };
  expect(sampleOf(other, { m: METRICS, t: 0 }, 10_000).processCpuPct).toBeNull();
});
