import { useSearchParams } from "react-router-dom";

import { ErrorBoundary } from "@/components/error-boundary";
import { AlertsBreakdown } from "@/features/analytics/components/alerts-breakdown";
import { ComparisonChart } from "@/features/analytics/components/comparison-chart";
import { DeviceHeatmap } from "@/features/analytics/components/device-heatmap";
import { DeviceTrendChart } from "@/features/analytics/components/device-trend-chart";
import { HoursPicker } from "@/features/analytics/components/hours-picker";
import { SystemUtilisation } from "@/features/analytics/components/system-utilisation";
import { TrendsTable } from "@/features/analytics/components/trends-table";
import { HOUR_CHOICES } from "@/features/analytics/types";

export default function Page() {
  const [params, setParams] = useSearchParams();
  const asked = Number(params.get("hours"));
  const hours = (HOUR_CHOICES as readonly number[]).includes(asked) ? asked : 24;
  return (
    <div className="analytics-page">
      <header>
        <h1>Analytics</h1>
        <HoursPicker
          value={hours}
          onChange={(h) => setParams(h === 24 ? {} : { hours: String(h) }, { replace: true })}
        />
      </header>
      <ErrorBoundary area="The trends">
        <TrendsTable hours={hours} />
      </ErrorBoundary>
      <ErrorBoundary area="The heatmap">
        <DeviceHeatmap hours={hours} />
      </ErrorBoundary>
      <div className="analytics-two">
        <ErrorBoundary area="The device trend">
          <DeviceTrendChart hours={hours} />
        </ErrorBoundary>
        <ErrorBoundary area="The comparison">
          <ComparisonChart hours={hours} />
        </ErrorBoundary>
      </div>
      <ErrorBoundary area="The alerts breakdown">
        <AlertsBreakdown hours={hours} />
      </ErrorBoundary>
      <ErrorBoundary area="The system utilisation">
        <SystemUtilisation />
      </ErrorBoundary>
    </div>
  );
}
