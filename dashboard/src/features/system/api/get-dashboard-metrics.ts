import { api } from "@/lib/api-client";
import type { DashboardFigures, Envelope } from "@/types/api";

const metricsApi = api.injectEndpoints({
  endpoints: (build) => ({
    getDashboardMetrics: build.query<DashboardFigures, void>({
      query: () => "/metrics/dashboard",
      transformResponse: (r: Envelope<DashboardFigures>) => r.data,
      providesTags: [{ type: "Metrics", id: "dashboard" }],
    }),
  }),
});

export const { useGetDashboardMetricsQuery } = metricsApi;
