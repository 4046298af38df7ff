import "@/features/devices/devices.css";

import { Link } from "react-router-dom";

import { Since } from "@/features/devices/components/device-card";
import { useClock } from "@/features/devices/hooks/use-clock";
import { useConnected, useLiveState } from "@/features/devices/hooks/use-live-reading";
import { inferInterval, isStale } from "@/features/devices/utils/readings";
import { displayValue } from "@/features/devices/utils/states";
import type { DeviceDetails } from "@/types/api";
import { formatTime } from "@/utils/format";

/** Id, type, location, connectivity and the live value (the REST one until a newer comes). */
export function DeviceHeader({ device }: { device: DeviceDetails }) {
  const live = useLiveState(device.deviceId);
  const connected = useConnected();
  const rest = device.current;
  const useLive = live && (!rest || Date.parse(live.timestamp) >= Date.parse(rest.timestamp));
  const reading = useLive
    ? { value: live.value, status: live.status, timestamp: live.timestamp, unit: live.unit }
    : rest
      ? { value: rest.value, status: rest.status, timestamp: rest.timestamp, unit: rest.unit ?? device.unit }
      : null;
  const connectivity = live?.connectivity ?? device.connectivity;
  const t = reading ? Date.parse(reading.timestamp) : null;
  const interval = device.intervalMs || inferInterval(live?.points);
  const old = useClock((now) => isStale(t, interval, now));
  const stale = !connected || old;
  const status = reading?.status ?? "unknown";

  return (
    <header className={`device-header panel card-${status}`}>
      <div className="device-header-title">
        <Link to="/" className="small">
          ← Overview
        </Link>
        <h1>{device.deviceId}</h1>
        <p className="muted">
          {device.type} · {device.location} · every {device.intervalMs.toLocaleString("en-US")} ms ·{" "}
          {device.status}
        </p>
      </div>
      <dl className="device-header-facts">
        <div>
          <dt>Live value</dt>
          <dd>
            <span
              className={`device-value big status-${status}${stale ? " stale" : ""}`}
              data-testid="device-header-value"
            >
              {displayValue(device.type, reading?.value, reading?.unit ?? device.unit)}
            </span>
          </dd>
        </div>
        <div>
          <dt>Status</dt>
          <dd className={`status-${status}`}>{reading ? status : "no data"}</dd>
        </div>
        <div>
          <dt>Connectivity</dt>
          <dd>
            <span className={`conn conn-${connectivity}`}>
              <span className="dot" aria-hidden /> {connectivity}
            </span>
          </dd>
        </div>
        <div>
          <dt>Last reading</dt>
          <dd title={reading ? formatTime(reading.timestamp) : undefined}>
            {stale && reading ? <span className="stale-tag">stale · </span> : null}
            <Since t={t} />
          </dd>
        </div>
        <div>
          <dt>Open alerts</dt>
          <dd className={device.openAlerts ? `sev-${device.alertStatus}` : undefined}>
            {device.openAlerts ? `${device.openAlerts} (${device.alertStatus})` : "none"}
          </dd>
        </div>
      </dl>
    </header>
  );
}
