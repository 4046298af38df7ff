// GET /api/alerts/history: every alert, resolved ones too (default: the last 7 days).
import type { AlertList, AlertListMeta, AlertListParams } from "@/features/alerts/types";
import { api } from "@/lib/api-client";
import type { Alert, Envelope } from "@/types/api";

export type AlertHistoryParams = Omit<AlertListParams, "status">;

export const getAlertHistoryApi = api.injectEndpoints({
  endpoints: (build) => ({
    alertHistory: build.query<AlertList, AlertHistoryParams>({
      query: (params) => ({ url: "/alerts/history", params: { ...params } }),
      transformResponse: (r: Envelope<{ alerts: Alert[] }>) => ({
        alerts: r.data.alerts,
        meta: r.meta as unknown as AlertListMeta,
      }),
      // Not refetched on every live event (it is up to 500 rows): callers poll it.
      providesTags: [{ type: "Alert", id: "HISTORY" }],
    }),
  }),
});

export const { useAlertHistoryQuery } = getAlertHistoryApi;
export const fetchAlertHistory = getAlertHistoryApi.endpoints.alertHistory.initiate;
