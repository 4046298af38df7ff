// GET /api/analytics/trends/{deviceId}?hours=: hourly avg/min/max, least-squares slope per
// hour, change first to last hour, and the live 1 h / 24 h trend.
import type { DeviceTrend } from "@/features/analytics/types";
import { api } from "@/lib/api-client";
import type { Envelope } from "@/types/api";

export const getDeviceTrendApi = api.injectEndpoints({
  endpoints: (build) => ({
    analyticsDeviceTrend: build.query<DeviceTrend, { deviceId: string; hours: number }>({
      query: ({ deviceId, hours }) => ({
        url: `/analytics/trends/${encodeURIComponent(deviceId)}`,
        params: { hours },
      }),
      transformResponse: (r: Envelope<DeviceTrend>) => r.data,
      providesTags: (_r, _e, { deviceId }) => [{ type: "Analytics", id: `trend:${deviceId}` }],
    }),
  }),
});

export const { useAnalyticsDeviceTrendQuery } = getDeviceTrendApi;
export const fetchDeviceTrend = getDeviceTrendApi.endpoints.analyticsDeviceTrend.initiate;
