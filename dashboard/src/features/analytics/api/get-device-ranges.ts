// GET /api/devices?limit=1000, reduced to each device's normal and alert range (the
// comparative chart scales each device to its own normal range).
import type { DeviceRange } from "@/features/analytics/types";
import { api } from "@/lib/api-client";
import type { DeviceSummary, Envelope } from "@/types/api";

export const getDeviceRangesApi = api.injectEndpoints({
  endpoints: (build) => ({
    analyticsDeviceRanges: build.query<DeviceRange[], void>({
      query: () => ({ url: "/devices", params: { limit: 1000 } }),
      transformResponse: (r: Envelope<{ devices: DeviceSummary[] }>) =>
        r.data.devices.map((d) => ({
          deviceId: d.deviceId,
          type: d.type,
          unit: d.unit,
          ...d.thresholds,
        })),
      providesTags: [{ type: "Device", id: "RANGES" }],
    }),
  }),
});

export const { useAnalyticsDeviceRangesQuery } = getDeviceRangesApi;
export const fetchDeviceRanges = getDeviceRangesApi.endpoints.analyticsDeviceRanges.initiate;
