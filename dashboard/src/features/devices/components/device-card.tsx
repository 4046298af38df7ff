import "@/features/devices/devices.css";

import { memo, useMemo, useRef } from "react";
import { Link } from "react-router-dom";

import { Gauge } from "@/features/devices/components/gauge";
import { SPARK_POINTS, Sparkline } from "@/features/devices/components/sparkline";
import { useClock } from "@/features/devices/hooks/use-clock";
import { useInView } from "@/features/devices/hooks/use-in-view";
import { useConnected, useLiveState } from "@/features/devices/hooks/use-live-reading";
import { useHistorySeed } from "@/features/devices/hooks/use-live-series";
import { mergePoints } from "@/features/devices/utils/live-series";
import {
  currentConnectivity,
  currentReading,
  DEFAULT_INTERVAL_MS,
  inferInterval,
  isStale,
} from "@/features/devices/utils/readings";
import { displayValue, stateLabels } from "@/features/devices/utils/states";
import { shortAgo } from "@/features/devices/utils/time";
import type { LivePoint } from "@/lib/live/slice";
import type { DeviceSummary } from "@/types/api";
import { formatTime, formatValue } from "@/utils/format";

/** Raw readings a card asks for at most (more: a shorter window, see useHistorySeed). */
const SEED_LIMIT = 3 * SPARK_POINTS;
const NONE: LivePoint[] = [];

interface Props {
  device: DeviceSummary;
  /** The device's reporting interval when known; else told from the live points. */
  intervalMs?: number;
}

/** "x s ago", re-rendered by the shared clock only when the text changes. */
export function Since({ t }: { t: number | null }) {
  const text = useClock((now) => (t === null || Number.isNaN(t) ? "never" : shortAgo(now - t)));
  return <>{text}</>;
}

export const DeviceCard = memo(function DeviceCard({ device, intervalMs }: Props) {
  const ref = useRef<HTMLElement>(null);
  const onScreen = useInView(ref);
  const live = useLiveState(device.deviceId, onScreen);
  const connected = useConnected();
  const reading = currentReading(device, live);
  const connectivity = currentConnectivity(device, live);
  // The sparkline opens with the device's recent readings, asked for only while the card is on
  // screen (as its room is joined): 10,000 cards off screen ask for nothing.
  const seed = useHistorySeed(device.deviceId, intervalMs ?? DEFAULT_INTERVAL_MS, SPARK_POINTS, {
    active: onScreen,
    limit: SEED_LIMIT,
  });
  const livePoints = live?.points;
  const points = useMemo(
    () => mergePoints(SPARK_POINTS, seed.first, seed.second, livePoints ?? NONE),
    [seed.first, seed.second, livePoints],
  );
  const interval = useMemo(() => intervalMs ?? inferInterval(points), [intervalMs, points]);
  const t = reading?.t ?? null;
  const old = useClock((now) => isStale(t, interval, now));
  const stale = !connected || old;
  const status = reading?.status ?? "unknown";
  const unit = reading?.unit ?? device.unit;
  const href = `/devices/${device.deviceId}`; // ids are URL-safe ([A-Za-z0-9_.:-])

  return (
    <article
      ref={ref}
      aria-label={device.deviceId}
      className={`device-card panel card-${status}${stale ? " stale" : ""}`}
      data-status={status}
      data-stale={stale || undefined}
    >
      <header className="device-card-head">
        <Link to={href} className="device-card-id">
          {device.deviceId}
        </Link>
        <span className={`conn conn-${connectivity}`} title={`connectivity: ${connectivity}`}>
          <span className="dot" aria-hidden /> {connectivity}
        </span>
      </header>
      <p className="device-card-meta">
        {device.type} · {device.location}
      </p>
      <div className="device-card-body">
        <Gauge
          value={reading?.value ?? null}
          status={status}
          thresholds={device.thresholds}
          range={{ min: device.stats.min24h, max: device.stats.max24h }}
          unit={unit}
        />
        <div className="device-card-reading">
          <span data-testid="device-value" className={`device-value status-${status}`}>
            {stateLabels(device.type) || device.type === "access_read" ? (
              displayValue(device.type, reading?.value)
            ) : (
              <>
                {formatValue(reading?.value)}
                {reading && unit ? <span className="unit"> {unit}</span> : null}
              </>
            )}
          </span>
          <span className={`status-pill status-${status}`}>
            <span className="dot" aria-hidden /> {reading ? status : "no data"}
          </span>
        </div>
      </div>
      <Sparkline points={points} />
      <footer className="device-card-foot">
        <span title={reading ? formatTime(reading.timestamp) : undefined}>
          {stale ? <span className="stale-tag">stale · </span> : null}
          <Since t={t} />
        </span>
        {device.openAlerts > 0 ? (
          <span className={`sev-${device.alertStatus}`}>
            {device.openAlerts} alert{device.openAlerts === 1 ? "" : "s"}
          </span>
        ) : null}
      </footer>
    </article>
  );
});
