import { act, screen, waitFor } from "@testing-library/react";
import userEvent from "@testing-library/user-event";
import toast from "react-hot-toast";
import { useLocation } from "react-router-dom";

import { useAlertToasts } from "@/features/alerts/hooks/use-alert-toasts";
import { emitAlertEvent, LiveProbe, makeAlert } from "@/features/alerts/testing/fixtures";
import type { LiveClient } from "@/lib/live/client";
import { renderWithApp } from "@/test/render";

afterEach(() => {
  act(() => toast.remove());
});

function Host() {
  useAlertToasts();
  const location = useLocation();
  return <output aria-label="location">{location.pathname + location.search}</output>;
}

function setup() {
  let client!: LiveClient;
  renderWithApp(
    <>
      <Host />
      <LiveProbe onClient={(c) => (client = c)} />
    </>,
    { path: "*", route: "/" },
  );
  return () => client;
}

test("a new alert shows a toast with its message that links to it", async () => {
  const client = setup();
  const alert = makeAlert({ id: 42, severity: "critical", message: "Pressure 9.1 above 8 on device-004" });
  act(() => emitAlertEvent(client(), "alert-triggered", alert));
  const text = await screen.findByText("Pressure 9.1 above 8 on device-004");
  expect(screen.getByText(/New alert \(critical\)/)).toHaveClass("sev-critical");
  expect(text.closest("[role='alert']")).not.toBeNull(); // critical: assertive
  await userEvent.click(screen.getByRole("link", { name: "View alert #42" }));
  expect(screen.getByLabelText("location")).toHaveTextContent("/alerts?alert=42");
});

test("escalated alerts toast, resolved ones quietly, silenced ones not at all", async () => {
  const client = setup();
  act(() => {
    emitAlertEvent(client(), "alert-escalated", makeAlert({ id: 5, message: "escalated one" }));
    emitAlertEvent(client(), "alert-resolved", makeAlert({ id: 6, status: "resolved", message: "resolved one" }));
    emitAlertEvent(client(), "alert-triggered", makeAlert({ id: 7, silenced: true, message: "silenced one" }));
    emitAlertEvent(client(), "alert-acknowledged", makeAlert({ id: 8, status: "acknowledged", message: "acked one" }));
  });
  expect(await screen.findByText("escalated one")).toBeInTheDocument();
  expect(screen.getByText(/Alert escalated/)).toBeInTheDocument();
  expect(screen.getByText("resolved one").closest(".alert-toast")).toHaveClass("quiet");
  expect(screen.queryByText("silenced one")).toBeNull();
  expect(screen.queryByText("acked one")).toBeNull();
});

test("a severity that rises on an open alert toasts again, in the new severity", async () => {
  const client = setup();
  act(() => emitAlertEvent(client(), "alert-triggered", makeAlert({ id: 9, severity: "low", message: "rising" })));
  expect(await screen.findByText(/New alert \(low\)/)).toBeInTheDocument();
  act(() => emitAlertEvent(client(), "alert-updated", makeAlert({ id: 9, severity: "critical", message: "rising" })));
  const raised = await screen.findByText(/Severity raised \(critical\)/);
  expect(raised).toHaveClass("sev-critical");
  expect(raised.closest("[role='alert']")).not.toBeNull();
});

test("a burst of alerts becomes one summary toast", async () => {
  const client = setup();
  act(() => {
    for (let id = 1; id <= 9; id += 1) emitAlertEvent(client(), "alert-triggered", makeAlert({ id, message: `burst ${id}` }));
  });
  await screen.findByText("burst 1");
  await waitFor(() => expect(screen.getByText("4 more new alerts")).toBeInTheDocument());
  expect(screen.queryByText("burst 6")).toBeNull();
});
