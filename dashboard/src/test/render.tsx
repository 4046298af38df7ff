import { render } from "@testing-library/react";
import type { ReactElement } from "react";
import { MemoryRouter, Route, Routes } from "react-router-dom";

import { AppProvider } from "@/app/provider";
import { makeStore, type RootState } from "@/app/store";
import type { Role } from "@/types/api";

/** Render inside the real providers, logged in as ``role`` (no socket: no token server). */
export function renderWithApp(
  ui: ReactElement,
  { role = "operator", path = "/", route = "/", state }: {
    role?: Role | null;
    path?: string;
    route?: string;
    state?: Partial<RootState>;
  } = {},
) {
  const session =
    role === null
      ? null
      : { token: "test-token", username: `${role}-user`, role, expiresAt: "2999-01-01T00:00:00Z" };
  const store = makeStore({ session: { session }, ...state });
  const result = render(
    <AppProvider store={store} connectLive={false}>
      <MemoryRouter initialEntries={[route]}>
        <Routes>
          <Route path={path} element={ui} />
        </Routes>
      </MemoryRouter>
    </AppProvider>,
  );
  return { store, ...result };
}
