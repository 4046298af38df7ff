import { screen } from "@testing-library/react";
import userEvent from "@testing-library/user-event";
import { http, HttpResponse } from "msw";

import { ConfigForm } from "@/features/devices/components/config-form";
import { deviceDetails, envelope } from "@/features/devices/testing/fixtures";
import { renderWithApp } from "@/test/render";
import { server } from "@/test/server";

async function replace(label: string, text: string) {
  const input = screen.getByLabelText(label);
  await userEvent.clear(input);
  if (text) await userEvent.type(input, text);
}

test.each(["viewer", "operator"] as const)("a %s does not see the form", (role) => {
  renderWithApp(<ConfigForm device={deviceDetails()} />, { role });
  expect(screen.queryByRole("form", { name: "Device configuration" })).not.toBeInTheDocument();
  expect(screen.queryByText("Configuration")).not.toBeInTheDocument();
});

test("an admin sees it filled with the device's configuration", () => {
  renderWithApp(<ConfigForm device={deviceDetails()} />, { role: "admin" });
  expect(screen.getByRole("form", { name: "Device configuration" })).toBeInTheDocument();
  expect(screen.getByLabelText("Normal min")).toHaveValue("20");
  expect(screen.getByLabelText("Alert max")).toHaveValue("85");
  expect(screen.getByLabelText("Interval (ms)")).toHaveValue("2000");
  expect(screen.getByLabelText("Location")).toHaveValue("assembly-line-1");
  expect(screen.getByLabelText("Status")).toHaveValue("active");
});

test.each([
  ["Normal max", "10", "Normal max", "Normal max must be above normal min (20)."],
  ["Alert max", "10", "Alert max", "Alert max must be above alert min (15)."],
  ["Alert min", "25", "Alert min", "Alert min must not be above normal min (20)."],
  ["Alert max", "70", "Alert max", "Alert max must not be below normal max (80)."],
  ["Interval (ms)", "5", "Interval (ms)", "The interval must be at least 10 ms."],
  ["Normal min", "abc", "Normal min", "Enter a number, or leave it empty for none."],
  ["Location", "", "Location", "Give a location."],
])("%s = %j is refused before any request", async (label, text, field, message) => {
  // No handler: a request would fail the test (unhandled requests are errors).
  renderWithApp(<ConfigForm device={deviceDetails()} />, { role: "admin" });
  await replace(label, text);
  await userEvent.click(screen.getByRole("button", { name: "Save configuration" }));
  expect(await screen.findByText(message)).toBeInTheDocument();
  expect(screen.getByLabelText(field)).toHaveAttribute("aria-invalid", "true");
  expect(screen.getByRole("alert")).toHaveTextContent("One value needs fixing.");
});

test("sends only what changed, and says so when saved", async () => {
  let body: unknown = null;
  server.use(
    http.put("/api/devices/device-001/config", async ({ request }) => {
      body = await request.json();
      return HttpResponse.json(envelope({ ...deviceDetails(), normalMax: 75, intervalMs: 500 }));
    }),
  );
  renderWithApp(<ConfigForm device={deviceDetails()} />, { role: "admin" });
  await replace("Normal max", "75");
  await replace("Interval (ms)", "500");
  await replace("Alert min", ""); // empty: no threshold
  await userEvent.click(screen.getByRole("button", { name: "Save configuration" }));
  expect(await screen.findByText(/configuration saved/)).toBeInTheDocument();
  expect(body).toEqual({ normalMax: 75, intervalMs: 500, alertMin: null });
});

test("shows the server's message on 422", async () => {
  server.use(
    http.put("/api/devices/device-001/config", () =>
      HttpResponse.json(
        {
          success: false,
          error: { code: "invalid_config", message: "alertMax (90) must not be below normalMax (95)", details: {} },
        },
        { status: 422 },
      ),
    ),
  );
  renderWithApp(<ConfigForm device={deviceDetails()} />, { role: "admin" });
  await replace("Location", "hall-2");
  await userEvent.click(screen.getByRole("button", { name: "Save configuration" }));
  expect(await screen.findByRole("alert")).toHaveTextContent(
    "Not saved: alertMax (90) must not be below normalMax (95)",
  );
});

test("nothing changed: no request", async () => {
  renderWithApp(<ConfigForm device={deviceDetails()} />, { role: "admin" });
  await userEvent.click(screen.getByRole("button", { name: "Save configuration" }));
  expect(await screen.findByText("Nothing to save: no value changed.")).toBeInTheDocument();
});
