import "@/features/devices/devices.css";

import { useDeferredValue, useMemo, useState } from "react";
import { useSelector } from "react-redux";

import { useDeviceSearch, useDevices } from "@/features/devices/api/get-devices";
import { DeviceCard } from "@/features/devices/components/device-card";
import { errorMessage } from "@/lib/api-client";
import type { LiveState } from "@/lib/live/slice";
import type { DeviceSummary, ReadingStatus } from "@/types/api";

type Filter = "all" | "alerts" | "warning" | "critical" | "offline";

const FILTERS: { value: Filter; label: string }[] = [
  { value: "all", label: "All devices" },
  { value: "alerts", label: "With open alerts" },
  { value: "warning", label: "Warning or worse" },
  { value: "critical", label: "Critical" },
  { value: "offline", label: "Offline or unknown" },
];

/** The live status of each device, as one string: only a change of status re-filters. */
function liveStatusKey(devices: LiveState["devices"]): string {
  const out: string[] = [];
  for (const [id, d] of Object.entries(devices)) out.push(`${id}\t${d.status}`);
  return out.join("\n");
}

function matches(
  d: DeviceSummary,
  text: string,
  filter: Filter,
  live: Map<string, ReadingStatus> | null,
): boolean {
  if (text) {
    const hay = `${d.deviceId} ${d.type} ${d.location}`.toLowerCase();
    if (!hay.includes(text)) return false;
  }
  const status = live ? (live.get(d.deviceId) ?? "normal") : d.lastReading?.status;
  switch (filter) {
    case "alerts":
      return d.openAlerts > 0;
    case "warning":
      return status === "warning" || status === "critical";
    case "critical":
      return status === "critical";
    case "offline":
      return d.connectivity !== "online";
    default:
      return true;
  }
}

/** A card per device: REST values first (polled every 30 s), live values over them. */
export function DeviceGrid() {
  const all = useDevices();
  const [text, setText] = useState("");
  const [filter, setFilter] = useState<Filter>("all");
  const deferredText = useDeferredValue(text.trim().toLowerCase());
  // More devices than one answer holds: the text filter asks the server.
  const total = all.data?.totalDevices ?? 0;
  const partial = all.data !== undefined && total > all.data.devices.length;
  const search = useDeviceSearch(deferredText, partial);
  const searching = partial && deferredText !== "";
  const { data, error, isLoading, isFetching } = searching ? search : all;
  const devices = searching ? (search.data?.devices ?? all.data?.devices) : data?.devices;
  const loaded = devices?.length ?? 0;
  const matching = searching ? (search.data?.totalDevices ?? loaded) : total;
  const byStatus = filter === "warning" || filter === "critical";
  const liveKey = useSelector((s: { live: LiveState }) => (byStatus ? liveStatusKey(s.live.devices) : ""));
  const shown = useMemo(() => {
    let live: Map<string, ReadingStatus> | null = null;
    if (byStatus) {
      // Live statuses where there are some, the REST ones for the others.
      live = new Map((devices ?? []).map((d) => [d.deviceId, d.lastReading?.status ?? "normal"]));
      for (const line of liveKey ? liveKey.split("\n") : []) {
        const [id, status] = line.split("\t");
        live.set(id!, status as ReadingStatus);
      }
    }
    return (devices ?? []).filter((d) => matches(d, deferredText, filter, live));
  }, [devices, deferredText, filter, byStatus, liveKey]);

  return (
    <section className="device-grid-section" aria-labelledby="devices-heading">
      <div className="dv-head">
        <h2 id="devices-heading">
          Devices{" "}
          {devices ? (
            <span className="muted count">
              {shown.length === total
                ? total.toLocaleString()
                : `${shown.length.toLocaleString()} of ${total.toLocaleString()}`}
            </span>
          ) : null}
        </h2>
        <div className="grid-filters">
          <input
            type="search"
            placeholder="Filter by id, type, location"
            aria-label="Filter devices"
            value={text}
            onChange={(e) => setText(e.target.value)}
          />
          <select
            aria-label="Show"
            value={filter}
            onChange={(e) => setFilter(e.target.value as Filter)}
          >
            {FILTERS.map((f) => (
              <option key={f.value} value={f.value}>
                {f.label}
              </option>
            ))}
          </select>
        </div>
      </div>
      {error ? (
        <p role="alert" className="error-text">
          Devices could not be loaded: {errorMessage(error)}
          {devices ? " (showing the last list)" : ""}
        </p>
      ) : null}
      {isLoading ? (
        <p className="muted" aria-busy="true">
          Loading devices…
        </p>
      ) : devices && devices.length === 0 ? (
        <p className="muted">No devices yet.</p>
      ) : (
        <div className="device-grid" aria-busy={isFetching || undefined}>
          {shown.map((d) => (
            <DeviceCard key={d.deviceId} device={d} intervalMs={d.intervalMs} />
          ))}
        </div>
      )}
      {devices && devices.length > 0 && shown.length === 0 ? (
        <p className="muted">No device matches.</p>
      ) : null}
      {partial && matching > loaded ? (
        <p className="muted" data-testid="partial-list">
          Showing the first {loaded.toLocaleString()} of {matching.toLocaleString()} devices (by id): type part
          of an id, type or location to find the others.
        </p>
      ) : null}
    </section>
  );
}
