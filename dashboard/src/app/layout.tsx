import { Suspense } from "react";
import { useDispatch, useSelector } from "react-redux";
import { NavLink, Outlet } from "react-router-dom";

import { ConnectionBadge } from "@/app/connection-badge";
import type { RootState } from "@/app/store";
import { ErrorBoundary } from "@/components/error-boundary";
import { ThemeToggle } from "@/components/theme";
import { useAlertToasts } from "@/features/alerts/hooks/use-alert-toasts";
import { loggedOut } from "@/lib/session";

export function Layout() {
  const session = useSelector((s: RootState) => s.session.session);
  const dispatch = useDispatch();
  useAlertToasts();
  return (
    <div className="shell">
      <header className="topbar">
        <strong className="brand">iotmon</strong>
        <nav aria-label="Main">
          <NavLink to="/" end>
            Overview
          </NavLink>
          <NavLink to="/alerts">Alerts</NavLink>
          <NavLink to="/analytics">Analytics</NavLink>
        </nav>
        <span className="spacer" />
        <ConnectionBadge />
        <ThemeToggle />
        <span className="user" title={session?.role}>
          {session?.username} ({session?.role})
        </span>
        <button type="button" className="link" onClick={() => dispatch(loggedOut())}>
          Log out
        </button>
      </header>
      <main>
        <ErrorBoundary area="This page">
          <Suspense fallback={<p>Loading…</p>}>
            <Outlet />
          </Suspense>
        </ErrorBoundary>
      </main>
    </div>
  );
}
