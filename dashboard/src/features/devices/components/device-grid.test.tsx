import { act, screen, waitFor, within } from "@testing-library/react";
import userEvent from "@testing-library/user-event";
import { http, HttpResponse } from "msw";

import { DeviceGrid } from "@/features/devices/components/device-grid";
import { deviceSummary, emptyHistory, envelope, sensorData } from "@/features/devices/testing/fixtures";
import { batch } from "@/lib/live/slice";
import { renderWithApp } from "@/test/render";
import { server } from "@/test/server";

const T0 = Date.parse("2026-03-01T12:00:00Z");
const iso = (ms: number) => new Date(ms).toISOString();

function serve() {
  const devices = [
    deviceSummary({
      deviceId: "device-001",
      lastReading: { value: 21.5, timestamp: iso(T0), status: "normal" },
    }),
    deviceSummary({
      deviceId: "device-002",
      type: "pressure",
      unit: "psi",
      lastReading: { value: 30, timestamp: iso(T0), status: "normal" },
    }),
    deviceSummary({ deviceId: "device-003", lastReading: null, connectivity: "unknown" }),
  ];
  let calls = 0;
  let limit: string | null = null;
  server.use(
    http.get("/api/devices", ({ request }) => {
      calls++;
      limit = new URL(request.url).searchParams.get("limit");
      return HttpResponse.json(envelope({ devices }, { totalDevices: 3, activeDevices: 2 }));
    }),
    // Each card on screen asks for its recent readings (its sparkline's start): none here.
    emptyHistory(),
  );
  return { calls: () => calls, limit: () => limit };
}

const value = (id: string) =>
  within(screen.getByRole("article", { name: id })).getByTestId("device-value");

test("a card per device from GET /api/devices", async () => {
  const api = serve();
  renderWithApp(<DeviceGrid />);
  expect(await screen.findByRole("article", { name: "device-001" })).toBeInTheDocument();
  expect(screen.getAllByRole("article")).toHaveLength(3);
  expect(value("device-001")).toHaveTextContent("21.50 celsius");
  expect(value("device-002")).toHaveTextContent("30.00 psi");
  expect(value("device-003")).toHaveTextContent("–");
  expect(api.calls()).toBe(1);
  expect(api.limit()).toBe("1000");
});

test("live values override the REST ones when they are newer, not when older", async () => {
  serve();
  const { store } = renderWithApp(<DeviceGrid />);
  await screen.findByRole("article", { name: "device-001" });
  act(() => {
    store.dispatch(
      batch([
        sensorData("device-001", 25.25, iso(T0 + 1000), "warning"),
        sensorData("device-002", 99, iso(T0 - 60_000)), // older than the REST reading
        sensorData("device-003", 7, iso(T0 + 5000)),
      ]),
    );
  });
  expect(value("device-001")).toHaveTextContent("25.25 celsius");
  expect(value("device-001")).toHaveClass("status-warning");
  expect(value("device-002")).toHaveTextContent("30.00 psi");
  expect(value("device-003")).toHaveTextContent("7.00 celsius");

  // Later live values keep replacing the shown one.
  act(() => {
    store.dispatch(batch([sensorData("device-001", 26, iso(T0 + 2000))]));
  });
  expect(value("device-001")).toHaveTextContent("26.00 celsius");
});

test("filters by text and by live status", async () => {
  serve();
  const { store } = renderWithApp(<DeviceGrid />);
  await screen.findByRole("article", { name: "device-001" });
  await userEvent.type(screen.getByLabelText("Filter devices"), "pressure");
  await waitFor(() => expect(screen.getAllByRole("article")).toHaveLength(1));
  expect(screen.getByRole("article", { name: "device-002" })).toBeInTheDocument();
  await userEvent.clear(screen.getByLabelText("Filter devices"));

  await userEvent.selectOptions(screen.getByLabelText("Show"), "critical");
  expect(screen.queryAllByRole("article")).toHaveLength(0);
  expect(screen.getByText("No device matches.")).toBeInTheDocument();
  act(() => {
    store.dispatch(batch([sensorData("device-003", 99, iso(T0 + 1000), "critical")]));
  });
  expect(screen.getAllByRole("article").map((a) => a.getAttribute("aria-label"))).toEqual(["device-003"]);
});

test("a fleet larger than one answer is searched on the server", async () => {
  const first = Array.from({ length: 3 }, (_, i) =>
    deviceSummary({ deviceId: `device-0000${i + 1}`, lastReading: null }),
  );
  const found = deviceSummary({ deviceId: "device-05000", location: "paint-shop-7", lastReading: null });
  const asked: (string | null)[] = [];
  server.use(
    http.get("/api/devices", ({ request }) => {
      const q = new URL(request.url).searchParams.get("q");
      asked.push(q);
      return q
        ? HttpResponse.json(envelope({ devices: [found] }, { totalDevices: 1, activeDevices: 0 }))
        : HttpResponse.json(envelope({ devices: first }, { totalDevices: 10000, activeDevices: 0 }));
    }),
    emptyHistory(),
  );
  renderWithApp(<DeviceGrid />);
  expect(await screen.findByRole("article", { name: "device-00001" })).toBeInTheDocument();
  expect(screen.getByTestId("partial-list")).toHaveTextContent(/first 3 of 10,000 devices/);
  expect(screen.getByRole("heading", { name: /Devices/ })).toHaveTextContent("3 of 10,000");
  await userEvent.type(screen.getByLabelText("Filter devices"), "paint-shop-7");
  expect(await screen.findByRole("article", { name: "device-05000" })).toBeInTheDocument();
  expect(screen.getAllByRole("article")).toHaveLength(1);
  expect(asked).toContain("paint-shop-7");
  expect(screen.queryByTestId("partial-list")).toBeNull();
});

test("a fleet that fits in one answer is filtered in the browser", async () => {
  const api = serve();
  renderWithApp(<DeviceGrid />);
  await screen.findByRole("article", { name: "device-001" });
  await userEvent.type(screen.getByLabelText("Filter devices"), "pressure");
  await waitFor(() => expect(screen.getAllByRole("article")).toHaveLength(1));
  expect(api.calls()).toBe(1);
  expect(screen.queryByTestId("partial-list")).toBeNull();
});
