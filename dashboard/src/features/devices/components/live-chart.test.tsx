import { act, screen, waitFor } from "@testing-library/react";
import { http, HttpResponse } from "msw";

import { env } from "@/config/env";
import { LiveChart } from "@/features/devices/components/live-chart";
import { SEAM_DELAY_MS } from "@/features/devices/hooks/use-live-series";
import { envelope, sensorData } from "@/features/devices/testing/fixtures";
import { batch } from "@/lib/live/slice";
import { renderWithApp } from "@/test/render";
import { server } from "@/test/server";

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

interface Asked {
  from: string;
  to: string | null;
  limit: string | null;
}

/** /history answers: ``answers[i]`` for the i-th request (the last one for any after), each
 * raw readings (t, v); ``gate`` holds an answer back until it resolves. */
function serveHistory(answers: [number, number][][], gate?: Promise<void>) {
  const asked: Asked[] = [];
  server.use(
    http.get("/api/devices/device-001/history", async ({ request }) => {
      const q = new URL(request.url).searchParams;
      const n = asked.push({ from: q.get("from")!, to: q.get("to"), limit: q.get("limit") });
      if (gate && n === 1) await gate;
      const points = answers[Math.min(n, answers.length) - 1] ?? [];
      return HttpResponse.json(
        envelope({
          deviceId: "device-001",
          unit: "celsius",
          from: q.get("from"),
          to: new Date(T0 + 3_600_000).toISOString(),
          bucketSeconds: null,
          downsampled: false,
          points: points.map(([t, v]) => ({ timestamp: new Date(t).toISOString(), value: v, min: v, max: v, count: 1 })),
        }),
      );
    }),
  );
  return asked;
}

const drawn = () => {
  const [trace] = plotted.props!.data as { y: number[]; x: Date[] }[];
  return { t: trace!.x.map((d) => (d.getTime() - T0) / 1000), v: trace!.y };
};

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

test("draws the rolling window of live points in place, with the threshold lines", async () => {
  serveHistory([]); // the device has sent nothing yet
  const { store } = renderWithApp(<LiveChart deviceId="device-001" unit="celsius" thresholds={thresholds} />);
  const chart = screen.getByTestId("live-chart");
  expect(chart).toHaveAttribute("data-points", "0");
  expect(screen.getByRole("img", { name: "device-001 live" })).toBeInTheDocument();
  await screen.findByText("Waiting for live data…");

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

test("opens with the recent readings from the API, asked for from about 1.5 x 600 intervals back", async () => {
  const asked = serveHistory([Array.from({ length: 200 }, (_, i) => [T0 + i * 1000, i])]);
  const before = Date.now();
  renderWithApp(<LiveChart deviceId="device-001" unit="celsius" thresholds={thresholds} intervalMs={1000} />);
  await waitFor(() => expect(screen.getByTestId("live-chart")).toHaveAttribute("data-points", "200"));
  expect(asked[0]!.to).toBeNull(); // until the server's now
  expect(asked[0]!.limit).toBe("5000");
  const back = before - Date.parse(asked[0]!.from);
  expect(back).toBeGreaterThanOrEqual(900_000 - 50);
  expect(back).toBeLessThanOrEqual(900_000 + 5_000);
  expect(drawn().t.slice(0, 3)).toEqual([0, 1, 2]);
});

test("live events that come while the history is fetched are kept; the overlap counts once", async () => {
  let open!: () => void;
  const gate = new Promise<void>((resolve) => (open = resolve));
  serveHistory([Array.from({ length: 10 }, (_, i) => [T0 + i * 1000, i])], gate);
  const { store } = renderWithApp(<LiveChart deviceId="device-001" unit="celsius" thresholds={thresholds} />);
  expect(screen.getByText("Loading the recent readings…")).toBeInTheDocument();
  act(() => {
    // 8 and 9 are in the history too; 12 before 11 (out of order)
    store.dispatch(batch([8, 9, 10, 12, 11].map((i) => sensorData("device-001", i, T0 + i * 1000))));
  });
  expect(screen.getByTestId("live-chart")).toHaveAttribute("data-points", "5");
  await act(async () => open());
  await waitFor(() => expect(screen.getByTestId("live-chart")).toHaveAttribute("data-points", "13"));
  expect(drawn().t).toEqual(Array.from({ length: 13 }, (_, i) => i));
  expect(drawn().v).toEqual(Array.from({ length: 13 }, (_, i) => i));
  act(() => {
    store.dispatch(batch([sensorData("device-001", 13, T0 + 13_000)]));
  });
  expect(screen.getByTestId("live-chart")).toHaveAttribute("data-points", "14");
});

test("a hole at the seam (stored after the history was read) is filled by the seam fetch", async () => {
  vi.useFakeTimers({ shouldAdvanceTime: true });
  try {
    const asked = serveHistory([
      [0, 1, 2, 3].map((i) => [T0 + i * 1000, i]),
      [3, 4, 5, 6].map((i) => [T0 + i * 1000, i]), // from the last history point on
    ]);
    const { store } = renderWithApp(<LiveChart deviceId="device-001" unit="celsius" thresholds={thresholds} />);
    act(() => {
      store.dispatch(batch([6, 7].map((i) => sensorData("device-001", i, T0 + i * 1000))));
    });
    await waitFor(() => expect(screen.getByTestId("live-chart")).toHaveAttribute("data-points", "6"));
    expect(drawn().t).toEqual([0, 1, 2, 3, 6, 7]); // 4 and 5: not yet
    await act(async () => {
      await vi.advanceTimersByTimeAsync(SEAM_DELAY_MS);
    });
    await waitFor(() => expect(screen.getByTestId("live-chart")).toHaveAttribute("data-points", "8"));
    expect(drawn().t).toEqual([0, 1, 2, 3, 4, 5, 6, 7]);
    expect(asked).toHaveLength(2);
    expect(Date.parse(asked[1]!.from)).toBe(T0 + 3000);
  } finally {
    vi.useRealTimers();
  }
});

test("a device faster than its interval: the downsampled answer is asked again over a shorter window", async () => {
  const asked: string[] = [];
  server.use(
    http.get("/api/devices/device-001/history", ({ request }) => {
      const from = new URL(request.url).searchParams.get("from")!;
      asked.push(from);
      const to = T0 + 3_600_000;
      const first = asked.length === 1;
      const points = first
        ? Array.from({ length: 100 }, (_, i) => ({
            timestamp: new Date(to - 600_000 + i * 6000).toISOString(),
            value: 1,
            min: 0,
            max: 2,
            count: 60,
          }))
        : Array.from({ length: 590 }, (_, i) => ({
            timestamp: new Date(to - 59_000 + i * 100).toISOString(),
            value: i,
            min: i,
            max: i,
            count: 1,
          }));
      return HttpResponse.json(
        envelope({
          deviceId: "device-001",
          unit: "celsius",
          from: first ? new Date(to - 600_000).toISOString() : from,
          to: new Date(to).toISOString(),
          bucketSeconds: first ? 6 : null,
          downsampled: first,
          points,
        }),
      );
    }),
  );
  renderWithApp(<LiveChart deviceId="device-001" unit="celsius" thresholds={thresholds} intervalMs={1000} />);
  await waitFor(() => expect(screen.getByTestId("live-chart")).toHaveAttribute("data-points", "590"));
  expect(Date.parse(asked[1]!)).toBe(T0 + 3_600_000 - 60_000); // 600 readings at 10 a second
});
