import { screen } from "@testing-library/react";
import userEvent from "@testing-library/user-event";
import { http, HttpResponse } from "msw";

import { LoginForm } from "@/features/auth/components/login-form";
import { renderWithApp } from "@/test/render";
import { server } from "@/test/server";

test("logging in stores the session", async () => {
  server.use(
    http.post("/api/auth/token", async ({ request }) => {
      const body = (await request.json()) as { username: string; password: string };
      expect(body).toEqual({ username: "ada", password: "secret-pass" });
      return HttpResponse.json({
        success: true,
        data: {
          accessToken: "t0k",
          tokenType: "bearer",
          expiresAt: "2999-01-01T00:00:00.000Z",
          username: "ada",
          role: "operator",
        },
        meta: { timestamp: "2026-01-01T00:00:00.000Z" },
      });
    }),
  );
  const { store } = renderWithApp(<LoginForm />, { role: null });
  await userEvent.type(screen.getByLabelText("User name"), "ada");
  await userEvent.type(screen.getByLabelText("Password"), "secret-pass");
  await userEvent.click(screen.getByRole("button", { name: "Log in" }));
  await vi.waitFor(() => expect(store.getState().session.session?.role).toBe("operator"));
  expect(JSON.parse(localStorage.getItem("iotmon.session") ?? "{}").token).toBe("t0k");
});

test("a wrong password shows the server's message", async () => {
  server.use(
    http.post("/api/auth/token", () =>
      HttpResponse.json(
        {
          success: false,
          error: { code: "unauthorized", message: "wrong user name or password", details: null },
        },
        { status: 401 },
      ),
    ),
  );
  const { store } = renderWithApp(<LoginForm />, { role: null });
  await userEvent.type(screen.getByLabelText("User name"), "ada");
  await userEvent.type(screen.getByLabelText("Password"), "nope");
  await userEvent.click(screen.getByRole("button", { name: "Log in" }));
  expect(await screen.findByRole("alert")).toHaveTextContent("wrong user name or password");
  expect(store.getState().session.session).toBeNull();
});
