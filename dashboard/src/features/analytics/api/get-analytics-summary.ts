// GET /api/analytics/summary?hours=: per device figures, a device x hour heatmap of hourly
// averages, alerts by type and severity (the server caches it for 5 s).
import type { AnalyticsSummary } from "@/features/analytics/types";
import { api } from "@/lib/api-client";
import type { Envelope } from "@/types/api";

export const getAnalyticsSummaryApi = api.injectEndpoints({
  endpoints: (build) => ({
    analyticsSummary: build.query<AnalyticsSummary, number>({
      query: (hours) => ({ url: "/analytics/summary", params: { hours } }),
      transformResponse: (r: Envelope<AnalyticsSummary>) => r.data,
      providesTags: [{ type: "Analytics", id: "SUMMARY" }],
    }),
  }),
});

export const { useAnalyticsSummaryQuery } = getAnalyticsSummaryApi;
export const fetchAnalyticsSummary = getAnalyticsSummaryApi.endpoints.analyticsSummary.initiate;
