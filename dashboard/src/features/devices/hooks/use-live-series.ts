// The Live chart's series: the last env.livePoints readings of the device, filled at once from
// the API and then carried on by Socket.IO. Live events keep landing in the store while the
// history is fetched (the room is joined on mount), so none is lost; the merge by timestamp
// drops what both hold. A reading that went out live just before the room was joined but was
// stored only after the history was read would leave a hole at the seam: one more short fetch
// a few seconds later (from the last history point on) fills it.
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

export interface LiveSeries {
  points: LivePoint[];
  /** The history is still being fetched. */
  loading: boolean;
}

export function useLiveSeries(deviceId: string, intervalMs: number): LiveSeries {
  const live = useLiveState(deviceId);
  const [from] = useState(() => new Date(Date.now() - historyWindowMs(env.livePoints, intervalMs)).toISOString());
  const base = useGetDeviceHistoryQuery({ deviceId, from, limit: FETCH_LIMIT });
  // More readings than asked for (the device is faster than its nominal interval): a shorter
  // window, at the rate the first answer shows.
  const narrowFrom =
    base.data?.downsampled === true
      ? new Date(Date.parse(base.data.to) - narrowedWindowMs(base.data, env.livePoints)).toISOString()
      : null;
  const narrow = useGetDeviceHistoryQuery(
    { deviceId, from: narrowFrom ?? "", limit: FETCH_LIMIT },
    { skip: narrowFrom === null },
  );
  const history = narrowFrom === null ? base.data : narrow.data;
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
  const seam = useGetDeviceHistoryQuery(
    { deviceId, from: seamFrom ?? "", limit: FETCH_LIMIT },
    { skip: seamFrom === null },
  );
  const second = useMemo(() => historyPoints(seam.data), [seam.data]);

  const points = useMemo(
    () => mergePoints(env.livePoints, first, second, live?.points ?? NONE),
    [first, second, live?.points],
  );
  return { points, loading: history === undefined && (base.isLoading || narrow.isLoading) };
}
