import { act, screen, waitFor, within } from "@testing-library/react";
import userEvent from "@testing-library/user-event";
import { http } from "msw";
import toast from "react-hot-toast";

import { AlertsBrowser } from "@/features/alerts/components/alerts-browser";
import {
  apiError,
  emitAlertEvent,
  listBody,
  LiveProbe,
  makeAlert,
  ok,
} from "@/features/alerts/testing/fixtures";
import type { LiveClient } from "@/lib/live/client";
import { renderWithApp } from "@/test/render";
import { server } from "@/test/server";
import type { Alert } from "@/types/api";

afterEach(() => {
  act(() => toast.remove());
});

function row(id: number): HTMLElement {
  const el = document.querySelector<HTMLElement>(`tr[data-alert-id="${id}"]`);
  if (!el) throw new Error(`no row for alert ${id}`);
  return el;
}

function serveAlerts(alerts: () => Alert[], seen: URL[] = []) {
  server.use(
    http.get("/api/alerts", ({ request }) => {
      seen.push(new URL(request.url));
      return Response.json(listBody(alerts()));
    }),
  );
  return seen;
}

test("filters build the right query", async () => {
  const seen = serveAlerts(() => [makeAlert()]);
  renderWithApp(<AlertsBrowser />, { path: "/alerts", route: "/alerts" });
  await screen.findByText(/above 40/);
  const first = seen.at(-1)!.searchParams;
  expect(Object.fromEntries(first)).toEqual({ status: "all", limit: "25", offset: "0" });

  const user = userEvent.setup();
  await user.selectOptions(screen.getByLabelText("Status"), "open");
  await user.selectOptions(screen.getByLabelText("Severity"), "critical");
  await user.selectOptions(screen.getByLabelText("Type"), "device_offline");
  await user.type(screen.getByLabelText("Device"), "device-007");
  await user.selectOptions(screen.getByLabelText("Time range"), "24h");

  await waitFor(() => expect(seen.at(-1)!.searchParams.get("deviceId")).toBe("device-007"));
  const q = seen.at(-1)!.searchParams;
  expect(q.get("status")).toBe("open");
  expect(q.get("severity")).toBe("critical");
  expect(q.get("type")).toBe("device_offline");
  expect(q.get("limit")).toBe("25");
  expect(q.get("offset")).toBe("0");
  expect(q.has("to")).toBe(false);
  const from = Date.parse(q.get("from")!);
  expect(Math.abs(Date.now() - 24 * 3600_000 - from)).toBeLessThan(2 * 60_000);
  // Typing is debounced: no request went out with a partial device id.
  expect(seen.some((u) => u.searchParams.get("deviceId") === "device-00")).toBe(false);
});

test("pages: Next asks for the next offset", async () => {
  const seen: URL[] = [];
  server.use(
    http.get("/api/alerts", ({ request }) => {
      seen.push(new URL(request.url));
      return Response.json(listBody([makeAlert()], { totalAlerts: 60 }));
    }),
  );
  renderWithApp(<AlertsBrowser />, { path: "/alerts", route: "/alerts?severity=high" });
  await screen.findByText("Page 1 of 3 (60 alerts)");
  await userEvent.click(screen.getByRole("button", { name: "Next" }));
  await waitFor(() => expect(seen.at(-1)!.searchParams.get("offset")).toBe("25"));
  expect(seen.at(-1)!.searchParams.get("severity")).toBe("high");
  expect(await screen.findByText("Page 2 of 3 (60 alerts)")).toBeInTheDocument();
});

test("past the server's count cap, the pages go on", async () => {
  const seen: URL[] = [];
  const full = Array.from({ length: 25 }, (_, i) => makeAlert({ id: i + 1 }));
  server.use(
    http.get("/api/alerts", ({ request }) => {
      seen.push(new URL(request.url));
      return Response.json(listBody(full, { totalAlerts: 10000, countsCapped: true }));
    }),
  );
  renderWithApp(<AlertsBrowser />, { path: "/alerts", route: "/alerts?page=400" });
  await screen.findByText("Page 400 of 400+ (10,000+ alerts)");
  await userEvent.click(screen.getByRole("button", { name: "Next" }));
  await waitFor(() => expect(seen.at(-1)!.searchParams.get("offset")).toBe("10000"));
  expect(await screen.findByText("Page 401 of 401+ (10,000+ alerts)")).toBeInTheDocument();
});

test("a viewer sees no Acknowledge or Resolve buttons", async () => {
  serveAlerts(() => [makeAlert({ id: 1 }), makeAlert({ id: 2, status: "escalated" })]);
  renderWithApp(<AlertsBrowser />, { role: "viewer", path: "/alerts", route: "/alerts" });
  await screen.findByText(/#2\)/);
  expect(screen.queryByRole("button", { name: "Acknowledge" })).toBeNull();
  expect(screen.queryByRole("button", { name: "Resolve" })).toBeNull();
});

test("an operator sees Acknowledge and Resolve on open alerts only", async () => {
  serveAlerts(() => [
    makeAlert({ id: 1 }),
    makeAlert({ id: 2, status: "acknowledged" }),
    makeAlert({ id: 3, status: "resolved" }),
  ]);
  renderWithApp(<AlertsBrowser />, { role: "operator", path: "/alerts", route: "/alerts" });
  await screen.findByText(/#3\)/);
  expect(within(row(1)).getByRole("button", { name: "Acknowledge" })).toBeEnabled();
  expect(within(row(1)).getByRole("button", { name: "Resolve" })).toBeEnabled();
  expect(within(row(2)).queryByRole("button", { name: "Acknowledge" })).toBeNull();
  expect(within(row(2)).getByRole("button", { name: "Resolve" })).toBeEnabled();
  expect(within(row(3)).queryByRole("button")).not.toHaveTextContent(/Acknowledge|Resolve/);
  expect(within(row(3)).getByTestId("alert-status")).toHaveTextContent("resolved");
});

test("acknowledge is optimistic and rolls back on a 409 with the server's message", async () => {
  serveAlerts(() => [makeAlert({ id: 7 })]);
  let answer!: () => void;
  const answered = new Promise<void>((resolve) => (answer = resolve));
  const puts: unknown[] = [];
  server.use(
    http.put("/api/alerts/7/acknowledge", async ({ request }) => {
      puts.push(await request.json());
      await answered;
      return apiError(409, "conflict", "alert 7 is resolved already");
    }),
  );
  renderWithApp(<AlertsBrowser />, { role: "operator", path: "/alerts", route: "/alerts" });
  await screen.findByText(/#7\)/);
  expect(within(row(7)).getByTestId("alert-status")).toHaveTextContent("triggered");

  await userEvent.click(within(row(7)).getByRole("button", { name: "Acknowledge" }));
  // Before the server answers (it waits for answer()): shown as acknowledged already.
  await waitFor(() => expect(within(row(7)).getByTestId("alert-status")).toHaveTextContent("acknowledged"));
  expect(within(row(7)).queryByRole("button", { name: "Acknowledge" })).toBeNull();
  await waitFor(() => expect(puts).toEqual([{}]));

  answer();
  expect(await screen.findByText(/alert 7 is resolved already/)).toBeInTheDocument();
  expect(within(row(7)).getByTestId("alert-status")).toHaveTextContent("triggered");
  expect(within(row(7)).getByRole("button", { name: "Acknowledge" })).toBeInTheDocument();
});

test("acknowledge keeps the server's answer when it succeeds", async () => {
  serveAlerts(() => [makeAlert({ id: 8 })]);
  server.use(
    http.put("/api/alerts/8/acknowledge", () =>
      ok(makeAlert({ id: 8, status: "acknowledged", acknowledgedBy: "operator-user" })),
    ),
  );
  renderWithApp(<AlertsBrowser />, { role: "operator", path: "/alerts", route: "/alerts" });
  await screen.findByText(/#8\)/);
  await userEvent.click(within(row(8)).getByRole("button", { name: "Acknowledge" }));
  await waitFor(() =>
    expect(within(row(8)).queryByRole("button", { name: "Acknowledge" })).toBeNull(),
  );
  expect(within(row(8)).getByTestId("alert-status")).toHaveTextContent("acknowledged");
});

test("a live alert-resolved event updates the row without a reload", async () => {
  let current = makeAlert({ id: 9 });
  const seen = serveAlerts(() => [current]);
  let client!: LiveClient;
  renderWithApp(
    <>
      <AlertsBrowser />
      <LiveProbe onClient={(c) => (client = c)} />
    </>,
    { role: "viewer", path: "/alerts", route: "/alerts" },
  );
  await screen.findByText(/#9\)/);
  expect(within(row(9)).getByTestId("alert-status")).toHaveTextContent("triggered");
  const before = seen.length;

  current = makeAlert({ id: 9, status: "resolved", resolvedBy: "someone-else" });
  act(() => emitAlertEvent(client, "alert-resolved", current));
  // Patched from the event itself, before any refetch...
  await waitFor(() => expect(within(row(9)).getByTestId("alert-status")).toHaveTextContent("resolved"));
  expect(seen.length).toBe(before);
  // ...and the list is refetched (new alerts, counts), once for the burst.
  await waitFor(() => expect(seen.length).toBe(before + 1));
  expect(within(row(9)).getByTestId("alert-status")).toHaveTextContent("resolved");
});

test("a live alert-triggered event for a new alert brings it into the list", async () => {
  let alerts = [makeAlert({ id: 10 })];
  serveAlerts(() => alerts);
  let client!: LiveClient;
  renderWithApp(
    <>
      <AlertsBrowser />
      <LiveProbe onClient={(c) => (client = c)} />
    </>,
    { path: "/alerts", route: "/alerts" },
  );
  await screen.findByText(/#10\)/);
  const fresh = makeAlert({ id: 11, severity: "critical", message: "Device offline: device-003" });
  alerts = [fresh, ...alerts];
  act(() => emitAlertEvent(client, "alert-triggered", fresh));
  expect(await screen.findByText("Device offline: device-003")).toBeInTheDocument();
  expect(row(11)).toBeInTheDocument();
});

test("the server's error is shown when the list cannot be loaded", async () => {
  server.use(http.get("/api/alerts", () => apiError(422, "invalid_range", "from must be before to")));
  renderWithApp(<AlertsBrowser />, { path: "/alerts", route: "/alerts" });
  expect(await screen.findByRole("alert")).toHaveTextContent("from must be before to");
});
