import { lazy, type ReactNode } from "react";
import { useSelector } from "react-redux";
import { createBrowserRouter, Navigate, RouterProvider, useLocation } from "react-router-dom";

import { Layout } from "@/app/layout";
import type { RootState } from "@/app/store";
import { LoginForm } from "@/features/auth/components/login-form";

// One chunk per page: the overview does not wait for the analytics code.
const Overview = lazy(() => import("@/app/routes/overview"));
const Device = lazy(() => import("@/app/routes/device"));
const Alerts = lazy(() => import("@/app/routes/alerts"));
const Analytics = lazy(() => import("@/app/routes/analytics"));

function RequireSession({ children }: { children: ReactNode }) {
  const session = useSelector((s: RootState) => s.session.session);
  const location = useLocation();
  if (!session) return <Navigate to="/login" replace state={{ from: location.pathname }} />;
  return children;
}

function LoginRoute() {
  const session = useSelector((s: RootState) => s.session.session);
  const location = useLocation();
  const from = (location.state as { from?: string } | null)?.from ?? "/";
  return session ? <Navigate to={from} replace /> : <div className="login-page"><LoginForm /></div>;
}

export const routes = [
  { path: "/login", element: <LoginRoute /> },
  {
    path: "/",
    element: (
      <RequireSession>
        <Layout />
      </RequireSession>
    ),
    children: [
      { index: true, element: <Overview /> },
      { path: "devices/:deviceId", element: <Device /> },
      { path: "alerts", element: <Alerts /> },
      { path: "analytics", element: <Analytics /> },
      { path: "*", element: <p>There is no such page.</p> },
    ],
  },
];

export function AppRouter() {
  return <RouterProvider router={createBrowserRouter(routes)} />;
}
