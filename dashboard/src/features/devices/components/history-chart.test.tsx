import { act, screen, waitFor } from "@testing-library/react";
import userEvent from "@testing-library/user-event";
import { http, HttpResponse } from "msw";

import { HistoryChart, relayoutRange } from "@/features/devices/components/history-chart";
import { envelope } from "@/features/devices/testing/fixtures";
import { renderWithApp } from "@/test/render";
import { server } from "@/test/server";

const plotted = vi.hoisted(() => ({ props: null as null | Record<string, unknown> }));
vi.mock("@/components/plot", () => ({
  Plot: (props: { name: string }) => {
    plotted.props = props;
    return <div role="img" aria-label={props.name} />;
  },
  downloadPng: vi.fn(),
}));

const thresholds = { normalMin: 20, normalMax: 80, alertMin: null, alertMax: 85 };

function serve() {
  const asked: { from: string; to: string; limit: string }[] = [];
  server.use(
    http.get("/api/devices/device-001/history", ({ request }) => {
      const q = new URL(request.url).searchParams;
      const from = q.get("from")!;
      const to = q.get("to")!;
      asked.push({ from, to, limit: q.get("limit")! });
      const span = Date.parse(to) - Date.parse(from);
      const downsampled = span > 2 * 3_600_000;
      const points = [0, 1, 2].map((i) => ({
        timestamp: new Date(Date.parse(from) + (i * span) / 3).toISOString(),
        value: 50 + i,
        min: downsampled ? 40 + i : 50 + i,
        max: downsampled ? 60 + i : 50 + i,
        count: downsampled ? 100 : 1,
      }));
      return HttpResponse.json(
        envelope({
          deviceId: "device-001",
          unit: "celsius",
          from,
          to,
          bucketSeconds: downsampled ? span / 3000 : null,
          downsampled,
          points,
        }),
      );
    }),
  );
  return asked;
}

const hours = (r: { from: string; to: string }) => (Date.parse(r.to) - Date.parse(r.from)) / 3_600_000;

test("the last hour first, raw; 24 h as an average line in a min/max band", async () => {
  const asked = serve();
  renderWithApp(<HistoryChart deviceId="device-001" unit="celsius" thresholds={thresholds} />);
  await waitFor(() => expect(screen.getByTestId("history-chart")).toHaveAttribute("data-points", "3"));
  expect(hours(asked[0]!)).toBe(1);
  expect(asked[0]!.limit).toBe("500");
  expect((plotted.props!.data as unknown[]).length).toBe(1);

  await userEvent.click(screen.getByRole("button", { name: "24 h" }));
  await waitFor(() => expect(asked).toHaveLength(2));
  expect(hours(asked[1]!)).toBe(24);
  await waitFor(() => expect((plotted.props!.data as unknown[]).length).toBe(3));
  const [lo, hi, avg] = plotted.props!.data as { y: number[]; fill?: string }[];
  expect(lo!.y).toEqual([40, 41, 42]);
  expect(hi!.fill).toBe("tonexty");
  expect(avg!.y).toEqual([50, 51, 52]);
  expect(screen.getByText(/buckets of/)).toBeInTheDocument();
});

test("zooming asks the server for the new range; a double click goes back", async () => {
  const asked = serve();
  renderWithApp(<HistoryChart deviceId="device-001" unit="celsius" thresholds={thresholds} />);
  await waitFor(() => expect(asked).toHaveLength(1));
  const onRelayout = plotted.props!.onRelayout as (e: unknown) => void;
  act(() => onRelayout({ "xaxis.range[0]": "2026-03-01 12:00:00", "xaxis.range[1]": "2026-03-01 12:10:30.5" }));
  await waitFor(() => expect(asked).toHaveLength(2));
  expect(Date.parse(asked[1]!.from)).toBe(new Date(2026, 2, 1, 12, 0, 0).getTime());
  expect(Date.parse(asked[1]!.to)).toBe(new Date(2026, 2, 1, 12, 10, 30).getTime());
  expect(screen.getByText(/zoomed/)).toBeInTheDocument();

  act(() => onRelayout({ "xaxis.autorange": true }));
  expect(screen.queryByText(/zoomed/)).not.toBeInTheDocument();
  // Back to the first range: answered from the cache.
  expect(asked).toHaveLength(2);
});

test("relayout events without an x range change nothing", () => {
  expect(relayoutRange({ autosize: true })).toBeNull();
  expect(relayoutRange({ "yaxis.range[0]": 1, "yaxis.range[1]": 2 })).toBeNull();
  expect(relayoutRange({ "xaxis.range": ["2026-03-01 12:00", "2026-03-01 13:00"] })).toEqual({
    from: new Date(2026, 2, 1, 12).getTime(),
    to: new Date(2026, 2, 1, 13).getTime(),
  });
});

test("CSV: fetched with the token, saved as a file", async () => {
  serve();
  let auth: string | null = null;
  server.use(
    http.get("/api/devices/device-001/history.csv", ({ request }) => {
      auth = request.headers.get("Authorization");
      return new HttpResponse("timestamp,value\r\n2026-03-01T12:00:00Z,1\r\n", {
        headers: { "Content-Type": "text/csv", "Content-Disposition": 'attachment; filename="d1.csv"' },
      });
    }),
  );
  const created = vi.fn(() => "blob:x");
  vi.stubGlobal("URL", Object.assign(URL, { createObjectURL: created, revokeObjectURL: vi.fn() }));
  const click = vi.spyOn(HTMLAnchorElement.prototype, "click").mockImplementation(() => undefined);
  renderWithApp(<HistoryChart deviceId="device-001" unit="celsius" thresholds={thresholds} />);
  await userEvent.click(screen.getByRole("link", { name: "CSV" }));
  await waitFor(() => expect(created).toHaveBeenCalled());
  expect(auth).toBe("Bearer test-token");
  expect(click).toHaveBeenCalled();
  click.mockRestore();
  vi.unstubAllGlobals();
});
