import "@/features/devices/devices.css";

import { Link, useParams } from "react-router-dom";

import { ErrorBoundary } from "@/components/error-boundary";
import { DeviceAlertHistory } from "@/features/alerts/components/device-alert-history";
import { useGetDeviceQuery } from "@/features/devices/api/get-device";
import { ConfigForm } from "@/features/devices/components/config-form";
import { DeviceHeader } from "@/features/devices/components/device-header";
import { HistoryChart } from "@/features/devices/components/history-chart";
import { LiveChart } from "@/features/devices/components/live-chart";
import { StatsPanel } from "@/features/devices/components/stats-panel";
import { errorMessage } from "@/lib/api-client";

/** The 1 h / 24 h statistics and connectivity come from here: refreshed every 15 s. */
const DEVICE_POLL_MS = 15_000;

/** `/devices/:deviceId`: live and historical charts, statistics, configuration, alerts. */
export default function Page() {
  const { deviceId = "" } = useParams();
  const { data: device, error, isLoading } = useGetDeviceQuery(deviceId, {
    skip: !deviceId,
    pollingInterval: DEVICE_POLL_MS,
  });

  if (isLoading) return <p aria-busy="true">Loading {deviceId}…</p>;
  if (!device) {
    const missing = error && "status" in error && error.status === 404;
    return (
      <div className="panel" role="alert">
        <h1>{deviceId}</h1>
        <p className="error-text">
          {missing ? "There is no such device." : `The device could not be loaded: ${errorMessage(error)}`}
        </p>
        <Link to="/">Back to the overview</Link>
      </div>
    );
  }
  const thresholds = {
    normalMin: device.normalMin,
    normalMax: device.normalMax,
    alertMin: device.alertMin,
    alertMax: device.alertMax,
  };
  return (
    <div className="device-page">
      <DeviceHeader device={device} />
      {error ? (
        <p role="alert" className="error-text">
          Could not refresh the device: {errorMessage(error)} (showing the last answer)
        </p>
      ) : null}
      <ErrorBoundary area="Live chart">
        <LiveChart
          key={device.deviceId}
          deviceId={device.deviceId}
          unit={device.unit}
          thresholds={thresholds}
          type={device.type}
          intervalMs={device.intervalMs}
        />
      </ErrorBoundary>
      <ErrorBoundary area="History">
        <HistoryChart
          deviceId={device.deviceId}
          unit={device.unit}
          thresholds={thresholds}
          type={device.type}
        />
      </ErrorBoundary>
      <div className="device-columns">
        <ErrorBoundary area="Statistics">
          <StatsPanel stats1h={device.stats1h} stats24h={device.stats24h} unit={device.unit} />
        </ErrorBoundary>
        <ErrorBoundary area="Configuration">
          <ConfigForm device={device} />
        </ErrorBoundary>
      </div>
      <ErrorBoundary area="Alert history">
        <div className="scroll-x">
          <DeviceAlertHistory deviceId={device.deviceId} />
        </div>
      </ErrorBoundary>
    </div>
  );
}
