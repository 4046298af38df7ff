import { act, screen, within } from "@testing-library/react";

import { DeviceCard } from "@/features/devices/components/device-card";
import { deviceSummary, emptyHistory, sensorData } from "@/features/devices/testing/fixtures";
import { batch, connectionChanged } from "@/lib/live/slice";
import { renderWithApp } from "@/test/render";
import { server } from "@/test/server";

// The card asks for its recent readings (its sparkline's start): none here.
beforeEach(() => {
  server.use(emptyHistory());
});

afterEach(() => {
  vi.useRealTimers();
});

test("shows the value with its unit, the status, and links to the device", () => {
  const device = deviceSummary({
    lastReading: { value: 91.234, timestamp: new Date().toISOString(), status: "critical" },
  });
  const { store } = renderWithApp(<DeviceCard device={device} intervalMs={1000} />);
  act(() => {
    store.dispatch(connectionChanged({ state: "connected" }));
  });
  const card = screen.getByRole("article", { name: "device-001" });
  expect(within(card).getByTestId("device-value")).toHaveTextContent("91.23 celsius");
  expect(within(card).getByTestId("device-value")).toHaveClass("status-critical");
  expect(within(card).getByText("critical")).toBeInTheDocument();
  expect(within(card).getByRole("link", { name: "device-001" })).toHaveAttribute("href", "/devices/device-001");
  expect(card).toHaveClass("card-critical");
  expect(card).not.toHaveClass("stale");
});

test("an MQTT device's state reads as a word: a door at 1 is open", () => {
  const device = deviceSummary({
    deviceId: "f2-e4fd45f654be:door-sensor-1",
    type: "door",
    unit: "open",
    thresholds: { normalMin: null, normalMax: null, alertMin: null, alertMax: null },
    lastReading: { value: 1, timestamp: new Date().toISOString(), status: "normal" },
  });
  renderWithApp(<DeviceCard device={device} intervalMs={1000} />);
  const card = screen.getByRole("article", { name: "f2-e4fd45f654be:door-sensor-1" });
  expect(within(card).getByTestId("device-value")).toHaveTextContent(/^open$/);
  expect(within(card).getByRole("link", { name: "f2-e4fd45f654be:door-sensor-1" })).toHaveAttribute(
    "href",
    "/devices/f2-e4fd45f654be:door-sensor-1",
  );
});

test("is stale while the live connection is down", () => {
  const { store } = renderWithApp(<DeviceCard device={deviceSummary()} intervalMs={1000} />);
  const card = screen.getByRole("article", { name: "device-001" });
  expect(card).toHaveClass("stale"); // the store starts disconnected
  act(() => {
    store.dispatch(connectionChanged({ state: "connected" }));
  });
  expect(card).not.toHaveClass("stale");
  act(() => {
    store.dispatch(connectionChanged({ state: "reconnecting" }));
  });
  expect(card).toHaveClass("stale");
});

test("goes stale when the reading is older than three intervals, fresh again on a live one", () => {
  vi.useFakeTimers({ toFake: ["Date", "setInterval", "clearInterval"] });
  vi.setSystemTime(new Date("2026-03-01T12:00:00Z"));
  const device = deviceSummary({
    lastReading: { value: 10, timestamp: "2026-03-01T12:00:00Z", status: "normal" },
  });
  const { store } = renderWithApp(<DeviceCard device={device} intervalMs={1000} />);
  act(() => {
    store.dispatch(connectionChanged({ state: "connected" }));
  });
  const card = screen.getByRole("article", { name: "device-001" });
  expect(card).not.toHaveClass("stale");
  expect(card).toHaveTextContent("0 s ago");

  act(() => vi.advanceTimersByTime(2000));
  expect(card).not.toHaveClass("stale");
  expect(card).toHaveTextContent("2 s ago");

  act(() => vi.advanceTimersByTime(2000)); // 4 s > 3 x 1 s
  expect(card).toHaveClass("stale");
  expect(card).toHaveTextContent("stale · 4 s ago");

  act(() => {
    store.dispatch(batch([sensorData("device-001", 11.5, Date.now())]));
  });
  expect(screen.getByTestId("device-value")).toHaveTextContent("11.50 celsius");
  expect(card).not.toHaveClass("stale");
});

test("without any reading it says so", () => {
  renderWithApp(<DeviceCard device={deviceSummary({ lastReading: null, connectivity: "unknown" })} />);
  const card = screen.getByRole("article", { name: "device-001" });
  expect(within(card).getByTestId("device-value")).toHaveTextContent("–");
  expect(card).toHaveTextContent("no data");
  expect(card).toHaveTextContent("never");
});
