// The Live chart's merge of the API's recent readings with the live ones.
import {
  historyPoints,
  historyWindowMs,
  mergePoints,
  narrowedWindowMs,
} from "@/features/devices/utils/live-series";
import type { LivePoint } from "@/lib/live/slice";
import type { History } from "@/types/api";

const T0 = Date.parse("2026-03-01T12:00:00Z");
const at = (i: number, v = i): LivePoint => ({ t: T0 + i * 1000, v });
const range = (a: number, b: number) => Array.from({ length: b - a }, (_, k) => at(a + k));
const times = (points: LivePoint[]) => points.map((p) => (p.t - T0) / 1000);

function history(points: LivePoint[], over: Partial<History> = {}): History {
  return {
    deviceId: "device-001",
    unit: "celsius",
    from: new Date(T0).toISOString(),
    to: new Date(T0 + 600_000).toISOString(),
    bucketSeconds: null,
    downsampled: false,
    points: points.map((p) => ({ timestamp: new Date(p.t).toISOString(), value: p.v, min: p.v, max: p.v, count: 1 })),
    ...over,
  };
}

test("history then live, overlapping at the seam: each reading once, in time order", () => {
  const merged = mergePoints(600, range(0, 10), range(7, 15));
  expect(times(merged)).toEqual(range(0, 15).map((p) => (p.t - T0) / 1000));
});

test("a gap between history and live stays a gap (nothing invented), closed by the seam fetch", () => {
  const hist = range(0, 5);
  const live = range(8, 12);
  expect(times(mergePoints(600, hist, live))).toEqual([0, 1, 2, 3, 4, 8, 9, 10, 11]);
  const seam = range(4, 9); // fetched later, from the last history point on
  expect(times(mergePoints(600, hist, seam, live))).toEqual(range(0, 12).map((_, i) => i));
});

test("out of order and replayed live points are sorted and counted once", () => {
  const live = [at(5), at(3), at(4), at(3), at(6), at(5)];
  expect(times(mergePoints(600, range(0, 4), live))).toEqual([0, 1, 2, 3, 4, 5, 6]);
});

test("events that arrived while the history was fetched are kept, newer or older than it", () => {
  // The history answer covers up to 9; live events 8..12 came in during the request, and one
  // late event (2) from a replay.
  const live = [at(8), at(9), at(10), at(2), at(11), at(12)];
  const merged = mergePoints(600, range(0, 10), live);
  expect(times(merged)).toEqual(range(0, 13).map((_, i) => i));
});

test("the same timestamp in both: the later series' value wins", () => {
  expect(mergePoints(600, [at(1, 10)], [at(1, 11)])).toEqual([at(1, 11)]);
});

test("at most max points, the newest", () => {
  const merged = mergePoints(600, range(0, 500), range(400, 900));
  expect(merged).toHaveLength(600);
  expect(times(merged)[0]).toBe(300);
  expect(times(merged).at(-1)).toBe(899);
});

test("random series: sorted, unique, the last max of the union", () => {
  let seed = 7;
  const random = () => ((seed = (seed * 1103515245 + 12345) % 2 ** 31) / 2 ** 31);
  for (let run = 0; run < 200; run++) {
    const all = Array.from({ length: Math.floor(random() * 4) }, () =>
      Array.from({ length: Math.floor(random() * 300) }, () => ({ t: Math.floor(random() * 2000), v: random() })),
    );
    const max = 1 + Math.floor(random() * 400);
    const merged = mergePoints(max, ...all);
    const union = [...new Set(all.flat().map((p) => p.t))].sort((a, b) => a - b);
    expect(merged.map((p) => p.t)).toEqual(union.slice(-max));
  }
});

test("history answers as points: raw ones only", () => {
  expect(historyPoints(history(range(0, 3)))).toEqual(range(0, 3));
  expect(historyPoints(history(range(0, 3), { downsampled: true }))).toEqual([]);
  expect(historyPoints(undefined)).toEqual([]);
});

test("the window asked for: half as long again as the points at the interval, 1 min to 1 h", () => {
  expect(historyWindowMs(600, 1000)).toBe(900_000);
  expect(historyWindowMs(600, 10)).toBe(60_000);
  expect(historyWindowMs(600, 60_000)).toBe(3_600_000);
  expect(historyWindowMs(600, Number.NaN)).toBe(900_000);
});

test("a downsampled answer narrows the window to about the points asked for", () => {
  const h = history([], {
    downsampled: true,
    to: new Date(T0 + 600_000).toISOString(),
    points: Array.from({ length: 100 }, (_, i) => ({
      timestamp: new Date(T0 + i * 6000).toISOString(),
      value: 1,
      min: 1,
      max: 1,
      count: 60, // 6000 readings in 10 minutes: 10 a second
    })),
  });
  expect(narrowedWindowMs(h, 600)).toBe(60_000);
});
