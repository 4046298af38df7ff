import { act, screen, waitFor, within } from "@testing-library/react";
import userEvent from "@testing-library/user-event";
import { http } from "msw";
import toast from "react-hot-toast";
import { useLocation } from "react-router-dom";

import { AlertDetailFromUrl } from "@/features/alerts/components/alert-detail-dialog";
import { makeAlert, ok } from "@/features/alerts/testing/fixtures";
import { renderWithApp } from "@/test/render";
import { server } from "@/test/server";

afterEach(() => {
  act(() => toast.remove());
});

function Where() {
  const l = useLocation();
  return <output aria-label="location">{l.pathname + l.search}</output>;
}

const DETAILS = {
  ...makeAlert({ id: 12, status: "acknowledged", acknowledgedBy: "op", acknowledgedAt: "2026-01-01T10:05:00.000Z" }),
  transitions: [
    { from: null, to: "triggered", actor: "system", note: null, at: "2026-01-01T10:00:00.000Z" },
    { from: "triggered", to: "acknowledged", actor: "op", note: "on my way", at: "2026-01-01T10:05:00.000Z" },
  ],
};

test("the dialog shows the alert and its transitions; Escape closes it", async () => {
  server.use(http.get("/api/alerts/12", () => ok(DETAILS)));
  renderWithApp(
    <>
      <AlertDetailFromUrl />
      <Where />
    </>,
    { role: "viewer", path: "/alerts", route: "/alerts?status=open&alert=12" },
  );
  const dialog = await screen.findByRole("dialog", { name: "Alert #12" });
  expect(dialog).toHaveAttribute("aria-modal", "true");
  expect(await within(dialog).findByText("on my way")).toBeInTheDocument();
  const history = within(dialog).getByRole("list");
  expect(within(history).getAllByRole("listitem")).toHaveLength(2);
  expect(within(dialog).getByTestId("alert-detail-status")).toHaveTextContent("acknowledged");
  expect(within(dialog).queryByRole("button", { name: "Resolve" })).toBeNull(); // a viewer
  await userEvent.keyboard("{Escape}");
  await waitFor(() => expect(screen.queryByRole("dialog")).toBeNull());
  expect(screen.getByLabelText("location")).toHaveTextContent(/^\/alerts\?status=open$/);
});

test("an operator resolves from the dialog with a note", async () => {
  const bodies: unknown[] = [];
  server.use(
    http.get("/api/alerts/12", () => ok(DETAILS)),
    http.put("/api/alerts/12/resolve", async ({ request }) => {
      bodies.push(await request.json());
      return ok(makeAlert({ id: 12, status: "resolved" }));
    }),
  );
  renderWithApp(<AlertDetailFromUrl />, { role: "operator", path: "/alerts", route: "/alerts?alert=12" });
  const dialog = await screen.findByRole("dialog", { name: "Alert #12" });
  await within(dialog).findByText("on my way");
  await userEvent.type(within(dialog).getByLabelText("Note (optional)"), "fixed the pump");
  await userEvent.click(within(dialog).getByRole("button", { name: "Resolve" }));
  await waitFor(() => expect(bodies).toEqual([{ note: "fixed the pump" }]));
  await waitFor(() =>
    expect(within(dialog).getByTestId("alert-detail-status")).toHaveTextContent("resolved"),
  );
});

test("a flapping alert says so, and that its notifications are held", async () => {
  server.use(http.get("/api/alerts/13", () => ok({ ...makeAlert({ id: 13, flapping: true }), transitions: [] })));
  renderWithApp(<AlertDetailFromUrl />, { role: "viewer", path: "/alerts", route: "/alerts?alert=13" });
  const dialog = await screen.findByRole("dialog", { name: "Alert #13" });
  expect(await within(dialog).findByTestId("alert-detail-flapping")).toHaveTextContent(
    "flapping: notifications held until it settles",
  );
});

test("a steady alert says nothing of flapping", async () => {
  server.use(http.get("/api/alerts/14", () => ok({ ...makeAlert({ id: 14 }), transitions: [] })));
  renderWithApp(<AlertDetailFromUrl />, { role: "viewer", path: "/alerts", route: "/alerts?alert=14" });
  const dialog = await screen.findByRole("dialog", { name: "Alert #14" });
  await within(dialog).findByTestId("alert-detail-status");
  expect(within(dialog).queryByTestId("alert-detail-flapping")).toBeNull();
});
