import { ErrorBoundary } from "@/components/error-boundary";
import { AlertDetailFromUrl } from "@/features/alerts/components/alert-detail-dialog";
import { AlertHistoryChart } from "@/features/alerts/components/alert-history-chart";
import { AlertsBrowser } from "@/features/alerts/components/alerts-browser";
import { SilencesPanel } from "@/features/alerts/components/silences-panel";

export default function Page() {
  return (
    <div className="alerts-page">
      <h1>Alerts</h1>
      <ErrorBoundary area="The alerts list">
        <AlertsBrowser />
      </ErrorBoundary>
      <ErrorBoundary area="The silences">
        <SilencesPanel />
      </ErrorBoundary>
      <ErrorBoundary area="The alert history chart">
        <AlertHistoryChart />
      </ErrorBoundary>
      <ErrorBoundary area="The alert details">
        <AlertDetailFromUrl />
      </ErrorBoundary>
    </div>
  );
}
