import "@/features/devices/devices.css";

import { ErrorBoundary } from "@/components/error-boundary";
import { ActiveAlertsSummary } from "@/features/alerts/components/active-alerts-summary";
import { DeviceGrid } from "@/features/devices/components/device-grid";
import { KeyFigures } from "@/features/system/components/key-figures";
import { SystemHealth } from "@/features/system/components/system-health";

/** `/`: key figures, system health, open alerts, and a live card per device. */
export default function Page() {
  return (
    <div className="overview-page">
      <h1 className="sr-only">Overview</h1>
      <div className="overview-top">
        <ErrorBoundary area="Key figures">
          <KeyFigures />
        </ErrorBoundary>
        <ErrorBoundary area="System health">
          <SystemHealth />
        </ErrorBoundary>
        <ErrorBoundary area="Active alerts">
          <ActiveAlertsSummary />
        </ErrorBoundary>
      </div>
      <ErrorBoundary area="Devices">
        <DeviceGrid />
      </ErrorBoundary>
    </div>
  );
}
