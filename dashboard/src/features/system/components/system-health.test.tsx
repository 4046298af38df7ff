import { screen, within } from "@testing-library/react";
import { http, HttpResponse } from "msw";

import { SystemHealth } from "@/features/system/components/system-health";
import type { Health } from "@/features/system/types/health";
import { renderWithApp } from "@/test/render";
import { server } from "@/test/server";

function health(over: Partial<Health> = {}): Health {
  return {
    status: "healthy",
    timestamp: "2026-03-01T12:00:00Z",
    version: "0.1.0",
    dependencies: {
      database: { status: "healthy", responseTime: 1.234 },
      redis: { status: "healthy", responseTime: 0.5 },
    },
    metrics: { uptime: 3725, requestsPerMinute: 42, errorRate: 0.0125 },
    ...over,
  };
}

test("each dependency with its response time, and the overall status", async () => {
  server.use(http.get("/api/health", () => HttpResponse.json(health())));
  renderWithApp(<SystemHealth />);
  expect(await screen.findByText("database")).toBeInTheDocument();
  expect(screen.getByTestId("health-status")).toHaveTextContent("healthy");
  const row = within(screen.getByRole("row", { name: /database/ }));
  expect(row.getByText("healthy")).toBeInTheDocument();
  expect(row.getByText("1.2 ms")).toBeInTheDocument();
  expect(screen.getByText(/up 1 h 2 min · 42 requests\/min · 1\.3 % errors/)).toBeInTheDocument();
});

test("a 503 is shown as an unhealthy system, not as a failed request", async () => {
  server.use(
    http.get("/api/health", () =>
      HttpResponse.json(
        health({
          status: "unhealthy",
          dependencies: {
            database: { status: "healthy", responseTime: 1 },
            redis: { status: "unhealthy", responseTime: 2000, error: "TimeoutError" },
          },
        }),
        { status: 503 },
      ),
    ),
  );
  renderWithApp(<SystemHealth />);
  expect(await screen.findByText("redis")).toBeInTheDocument();
  expect(screen.getByTestId("health-status")).toHaveTextContent("unhealthy");
  expect(within(screen.getByRole("row", { name: /redis/ })).getByText("unhealthy")).toHaveAttribute(
    "title",
    "TimeoutError",
  );
  expect(screen.queryByRole("alert")).not.toBeInTheDocument();
});
