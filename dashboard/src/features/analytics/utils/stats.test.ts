import type { DeviceRange, SummaryDevice } from "@/features/analytics/types";
import { deviceScale, rowTrend, slope, toPercent } from "@/features/analytics/utils/stats";

test("slope is the least-squares slope; change is last minus first", () => {
  expect(slope([[0, 1], [1, 3], [2, 5]])).toBeCloseTo(2);
  expect(slope([[0, 1]])).toBeNull();
  expect(rowTrend([null, 10, null, 16])).toEqual({ slopePerHour: 3, change: 6, first: 10, last: 16 });
});

const device = (over: Partial<SummaryDevice>): SummaryDevice => ({
  deviceId: "d1",
  type: "temperature",
  unit: "°C",
  readings: 1,
  avg: 20,
  min: 15,
  max: 25,
  availability: 1,
  ...over,
});

test("a device is scaled to its normal range, else its type's, else its own", () => {
  const ranges = new Map<string, DeviceRange>([
    ["d1", { deviceId: "d1", type: "temperature", unit: "°C", normalMin: 18, normalMax: 26, alertMin: 10, alertMax: 35 }],
  ]);
  const d1 = device({});
  const d2 = device({ deviceId: "d2", min: 10, max: 30 });
  const d3 = device({ deviceId: "d3", type: "pressure", min: 1, max: 3 });
  const all = [d1, d2, d3];
  const s1 = deviceScale(d1, ranges, all)!;
  expect(s1).toEqual({ lo: 18, hi: 26, basis: "normal range" });
  expect(toPercent(22, s1)).toBe(50);
  expect(deviceScale(d2, ranges, all)).toEqual({ lo: 10, hi: 30, basis: "type range" });
  expect(deviceScale(d3, ranges, all)).toEqual({ lo: 1, hi: 3, basis: "own range" });
});
