import { act, screen, waitFor, within } from "@testing-library/react";
import userEvent from "@testing-library/user-event";
import { http } from "msw";
import toast from "react-hot-toast";

import { SilencesPanel } from "@/features/alerts/components/silences-panel";
import { apiError, ok } from "@/features/alerts/testing/fixtures";
import { validateSilence } from "@/features/alerts/utils/silence-form";
import { renderWithApp } from "@/test/render";
import { server } from "@/test/server";
import type { Silence } from "@/types/api";

afterEach(() => {
  act(() => toast.remove());
});

const SILENCE: Silence = {
  id: 3,
  deviceId: "device-002",
  alertType: null,
  startsAt: "2026-01-01T10:00:00.000Z",
  endsAt: "2026-01-01T12:00:00.000Z",
  reason: "maintenance",
  createdBy: "op",
};

function serve(silences: Silence[], posts: unknown[] = []) {
  server.use(
    http.get("/api/silences", () => ok({ silences })),
    http.post("/api/silences", async ({ request }) => {
      posts.push(await request.json());
      return ok({ ...SILENCE, id: 4 }, 201);
    }),
  );
  return posts;
}

test("validation: a device or a type, a valid id, a positive duration", () => {
  const base = { deviceId: "", type: "" as const, duration: "30", unit: "minutes" as const, reason: "" };
  expect(validateSilence(base)).toMatchObject({ ok: false, errors: { target: expect.any(String) } });
  expect(validateSilence({ ...base, deviceId: "bad id!" })).toMatchObject({
    ok: false,
    errors: { deviceId: expect.any(String) },
  });
  expect(validateSilence({ ...base, deviceId: "d1", duration: "0" })).toMatchObject({
    ok: false,
    errors: { duration: expect.any(String) },
  });
  expect(validateSilence({ ...base, deviceId: "d1", duration: "367", unit: "days" })).toMatchObject({
    ok: false,
    errors: { duration: expect.any(String) },
  });
  expect(validateSilence({ ...base, type: "device_offline", duration: "2", unit: "hours", reason: " x " })).toEqual({
    ok: true,
    body: { type: "device_offline", durationS: 7200, reason: "x" },
  });
});

test("the form shows its errors and sends nothing until it is valid", async () => {
  const posts = serve([]);
  renderWithApp(<SilencesPanel />, { role: "operator" });
  await screen.findByText("No silences in force.");
  const form = screen.getByRole("form", { name: "New silence" });
  const user = userEvent.setup();

  await user.click(within(form).getByRole("button", { name: "Create silence" }));
  expect(await within(form).findByRole("alert")).toHaveTextContent(
    "Choose a device, an alert type, or both.",
  );

  await user.type(within(form).getByLabelText("Device"), "no spaces allowed");
  await user.clear(within(form).getByLabelText("Duration"));
  await user.click(within(form).getByRole("button", { name: "Create silence" }));
  expect(within(form).getByText(/A device id is 1–64/)).toBeInTheDocument();
  expect(within(form).getByText("The duration must be a number above zero.")).toBeInTheDocument();
  expect(within(form).getByLabelText("Device")).toHaveAttribute("aria-invalid", "true");
  expect(posts).toEqual([]);

  await user.clear(within(form).getByLabelText("Device"));
  await user.type(within(form).getByLabelText("Device"), "device-002");
  await user.selectOptions(within(form).getByLabelText("Alert type"), "threshold_exceeded");
  await user.type(within(form).getByLabelText("Duration"), "2");
  await user.selectOptions(within(form).getByLabelText("Duration unit"), "hours");
  await user.type(within(form).getByLabelText("Reason"), "pump swap");
  await user.click(within(form).getByRole("button", { name: "Create silence" }));
  await waitFor(() =>
    expect(posts).toEqual([
      { deviceId: "device-002", type: "threshold_exceeded", durationS: 7200, reason: "pump swap" },
    ]),
  );
  expect(within(form).queryByRole("alert")).toBeNull();
});

test("the server's refusal is shown", async () => {
  server.use(
    http.get("/api/silences", () => ok({ silences: [] })),
    http.post("/api/silences", () => apiError(404, "not_found", "device nope does not exist")),
  );
  renderWithApp(<SilencesPanel />, { role: "operator" });
  const form = await screen.findByRole("form", { name: "New silence" });
  await userEvent.type(within(form).getByLabelText("Device"), "nope");
  await userEvent.click(within(form).getByRole("button", { name: "Create silence" }));
  expect(await within(form).findByRole("alert")).toHaveTextContent("device nope does not exist");
});

test("a silence is listed and an operator ends it", async () => {
  let silences = [SILENCE];
  const deleted: string[] = [];
  server.use(
    http.get("/api/silences", () => ok({ silences })),
    http.delete("/api/silences/:id", ({ params }) => {
      deleted.push(String(params.id));
      silences = [];
      return ok({ deleted: 3 });
    }),
  );
  renderWithApp(<SilencesPanel />, { role: "operator" });
  expect(await screen.findByText("maintenance")).toBeInTheDocument();
  await userEvent.click(screen.getByRole("button", { name: "End silence 3" }));
  expect(await screen.findByText("No silences in force.")).toBeInTheDocument();
  expect(deleted).toEqual(["3"]);
});

test("a viewer sees the silences but cannot create or end one", async () => {
  serve([SILENCE]);
  renderWithApp(<SilencesPanel />, { role: "viewer" });
  expect(await screen.findByText("maintenance")).toBeInTheDocument();
  expect(screen.queryByRole("form", { name: "New silence" })).toBeNull();
  expect(screen.queryByRole("button", { name: /End silence/ })).toBeNull();
});
