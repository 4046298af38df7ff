// A device's recent series: its last readings filled at once from the API and then carried on
// by Socket.IO (the Live chart, and each device card's sparkline while the card is on screen).
// Live events keep landing in the store while the history is fetched (the room is joined at
// the same time), so none is lost; the merge by timestamp drops what both hold. A reading that
// went out live just before the room was joined but was stored only after the history was
// read would leave a hole at the seam: one more short fetch a few seconds later (from the last
// history point on) fills it.
import { useEffect, useMemo, useState } from "react";

import { env } from "@/config/env";
import { useGetDeviceHistoryQuery } from "@/features/devices/api/get-device-history";
import { useLiveState } from "@/features/devices/hooks/use-live-reading";
import {
  historyPoints,
  historyWindowMs,
  mergePoints,
  narrowedWindowMs,
} from "@/features/devices/utils/live-series";
import type { LivePoint } from "@/lib/live/slice";

/** Raw readings per answer at most (the API downsamples above it). */
export const FETCH_LIMIT = 5000;
/** The seam fetch, this long after the history arrived. */
export const SEAM_DELAY_MS = 3000;

const NONE: LivePoint[] = [];

export interface SeedOptions {
  /** Fetch only while true (a card on screen); each time it turns true, a fresh window. */
  active?: boolean;
  /** Raw readings per answer at most. */
  limit?: number;
}

export interface HistorySeed {
  /** The history's readings (none while fetching, none when inactive since it was fetched). */
  first: LivePoint[];
  /** The seam fetch's readings. */
  second: LivePoint[];
  /** The history is still being fetched. */
  loading: boolean;
}

/**
 * The device's last ``points`` readings from the API, asked for when ``active`` turns true
 * (not at all while it is false), then the seam fetch. Merge them with the live points
 * (``mergePoints``) for the series.
 */
export function useHistorySeed(
  deviceId: string,
  intervalMs: number,
  points: number,
  { active = true, limit = FETCH_LIMIT }: SeedOptions = {},
): HistorySeed {
  const windowMs = historyWindowMs(points, intervalMs);
  // The window starts when the series comes on: computed on the way from inactive to active.
  const [since, setSince] = useState(() => ({
    active,
    from: active ? new Date(Date.now() - windowMs).toISOString() : null,
  }));
  if (since.active !== active) {
    // An updater, run once for the transition (as the initializer above is once for the mount).
    setSince(() => ({ active, from: active ? new Date(Date.now() - windowMs).toISOString() : null }));
  }
  const from = active ? since.from : null;

  const base = useGetDeviceHistoryQuery({ deviceId, from: from ?? "", limit }, { skip: from === null });
  // More readings than asked for (the device is faster than its nominal interval): a shorter
  // window, at the rate the first answer shows.
  const baseData = from === null ? undefined : base.data;
  const narrowFrom =
    baseData?.downsampled === true
      ? new Date(Date.parse(baseData.to) - narrowedWindowMs(baseData, points)).toISOString()
      : null;
  const narrow = useGetDeviceHistoryQuery(
    { deviceId, from: narrowFrom ?? "", limit },
    { skip: narrowFrom === null },
  );
  const history = narrowFrom === null ? baseData : narrow.data;
  const first = useMemo(() => historyPoints(history), [history]);

  const [seamFrom, setSeamFrom] = useState<string | null>(null);
  const seamStart = history
    ? first.length
      ? new Date(first[first.length - 1]!.t).toISOString()
      : history.to
    : null;
  useEffect(() => {
    if (seamStart === null) return;
    const timer = setTimeout(() => setSeamFrom(seamStart), SEAM_DELAY_MS);
    return () => clearTimeout(timer);
  }, [seamStart]);
  const seamArg = active && seamFrom !== null ? seamFrom : null;
  const seam = useGetDeviceHistoryQuery(
    { deviceId, from: seamArg ?? "", limit },
    { skip: seamArg === null },
  );
  const second = useMemo(() => historyPoints(seamArg === null ? undefined : seam.data), [seamArg, seam.data]);

  return {
    first,
    second,
    loading: from !== null && history === undefined && (base.isLoading || narrow.isLoading),
  };
}

export interface LiveSeries {
  points: LivePoint[];
  /** The history is still being fetched. */
  loading: boolean;
}

export function useLiveSeries(deviceId: string, intervalMs: number): LiveSeries {
  const live = useLiveState(deviceId);
  const { first, second, loading } = useHistorySeed(deviceId, intervalMs, env.livePoints);
  const points = useMemo(
    () => mergePoints(env.livePoints, first, second, live?.points ?? NONE),
    [first, second, live?.points],
  );
  return { points, loading };
}
