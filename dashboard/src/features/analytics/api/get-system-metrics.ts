// GET /api/metrics/system: this web process, the host, Redis and PostgreSQL.
import type { SystemMetrics } from "@/features/analytics/types";
import { api } from "@/lib/api-client";
import type { Envelope } from "@/types/api";

export const getSystemMetricsApi = api.injectEndpoints({
  endpoints: (build) => ({
    analyticsSystemMetrics: build.query<SystemMetrics, void>({
      query: () => "/metrics/system",
      transformResponse: (r: Envelope<SystemMetrics>) => r.data,
      providesTags: [{ type: "Metrics", id: "SYSTEM" }],
    }),
  }),
});

export const { useAnalyticsSystemMetricsQuery } = getSystemMetricsApi;
export const fetchSystemMetrics = getSystemMetricsApi.endpoints.analyticsSystemMetrics.initiate;
