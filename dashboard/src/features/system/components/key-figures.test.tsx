import { act, screen } from "@testing-library/react";
import { http, HttpResponse } from "msw";

import { KeyFigures } from "@/features/system/components/key-figures";
import { batch, connectionChanged } from "@/lib/live/slice";
import { renderWithApp } from "@/test/render";
import { server } from "@/test/server";

const figures = {
  totalDevices: 5,
  activeDevices: 4,
  activeAlerts: 3,
  alertsBySeverity: { low: 0, medium: 1, high: 0, critical: 2 },
  dataPointsLastHour: 12_345,
  systemHealth: "healthy",
  updatedAt: "2026-03-01T12:00:00Z",
};

test("devices, readings and alerts by severity; newer live figures win", async () => {
  let calls = 0;
  server.use(
    http.get("/api/metrics/dashboard", () => {
      calls++;
      return HttpResponse.json({ success: true, data: figures, meta: { timestamp: "2026-03-01T12:00:00Z" } });
    }),
  );
  const { store } = renderWithApp(<KeyFigures />);
  expect(await screen.findByText("12,345")).toBeInTheDocument();
  expect(screen.getByTestId("figure-devices")).toHaveTextContent("4 / 5");
  expect(screen.getByTestId("figure-alerts")).toHaveTextContent("3");
  expect(screen.getByTestId("figure-alerts")).toHaveTextContent("critical 2");
  expect(screen.getByTestId("figure-alerts")).toHaveTextContent("medium 1");
  expect(calls).toBe(1);

  act(() => {
    store.dispatch(connectionChanged({ state: "connected" }));
    store.dispatch(
      batch([
        {
          name: "system-status",
          payload: {
            eventId: "9",
            totalDevices: 6,
            activeDevices: 6,
            activeAlertsCount: 3,
            dataPointsLastHour: 20_000,
            systemHealth: "healthy",
            timestamp: "2026-03-01T12:00:05Z",
          },
        },
      ]),
    );
  });
  expect(screen.getByTestId("figure-devices")).toHaveTextContent("6 / 6");
  expect(screen.getByTestId("figure-readings")).toHaveTextContent("20,000");
});
