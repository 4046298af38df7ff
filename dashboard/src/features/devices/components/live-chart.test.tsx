import { act, screen } from "@testing-library/react";

import { env } from "@/config/env";
import { LiveChart } from "@/features/devices/components/live-chart";
import { sensorData } from "@/features/devices/testing/fixtures";
import { batch } from "@/lib/live/slice";
import { renderWithApp } from "@/test/render";

// Plotly needs a real browser: a stand-in that shows what it would draw.
const plotted = vi.hoisted(() => ({ props: null as null | Record<string, unknown> }));
vi.mock("@/components/plot", () => ({
  Plot: (props: { name: string }) => {
    plotted.props = props;
    return <div role="img" aria-label={props.name} />;
  },
  downloadPng: vi.fn(),
}));

const thresholds = { normalMin: 20, normalMax: 80, alertMin: 15, alertMax: 85 };
const T0 = Date.parse("2026-03-01T12:00:00Z");

test("the live store keeps at most env.livePoints points per device", () => {
  const { store } = renderWithApp(<div />);
  const n = env.livePoints + 150;
  act(() => {
    store.dispatch(batch(Array.from({ length: n }, (_, i) => sensorData("device-001", i, T0 + i * 1000))));
  });
  const points = store.getState().live.devices["device-001"]!.points;
  expect(points).toHaveLength(env.livePoints);
  expect(points[0]!.v).toBe(150); // the oldest went first
  expect(points.at(-1)!.v).toBe(n - 1);
  // One more, one at a time: still bounded.
  act(() => {
    store.dispatch(batch([sensorData("device-001", -1, T0 + n * 1000)]));
  });
  expect(store.getState().live.devices["device-001"]!.points).toHaveLength(env.livePoints);
});

test("draws the rolling window of live points in place, with the threshold lines", () => {
  const { store } = renderWithApp(<LiveChart deviceId="device-001" unit="celsius" thresholds={thresholds} />);
  const chart = screen.getByTestId("live-chart");
  expect(chart).toHaveAttribute("data-points", "0");
  expect(screen.getByRole("img", { name: "device-001 live" })).toBeInTheDocument();
  expect(screen.getByText("Waiting for live data…")).toBeInTheDocument();

  act(() => {
    store.dispatch(
      batch([
        sensorData("device-001", 30, T0 + 2000),
        sensorData("device-001", 31, T0), // a late one (replay): drawn in time order
        sensorData("device-002", 99, T0 + 1000), // another device: not here
      ]),
    );
  });
  expect(chart).toHaveAttribute("data-points", "2");
  const [trace] = plotted.props!.data as { y: number[]; x: Date[] }[];
  expect(trace!.y).toEqual([31, 30]);
  expect(trace!.x.map((d) => d.getTime())).toEqual([T0, T0 + 2000]);
  const layout = plotted.props!.layout as { shapes: { y0: number; type: string }[] };
  expect(layout.shapes.filter((s) => s.type === "line").map((s) => s.y0)).toEqual([15, 85]);
  expect(layout.shapes.some((s) => s.type === "rect" && s.y0 === 20)).toBe(true);

  act(() => {
    store.dispatch(
      batch(Array.from({ length: env.livePoints + 10 }, (_, i) => sensorData("device-001", i, T0 + 5000 + i))),
    );
  });
  expect(chart).toHaveAttribute("data-points", String(env.livePoints));
});
