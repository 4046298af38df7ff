// GET /api/alerts: alerts newest first, with counts by severity for the whole filter.
import type { AlertList, AlertListMeta, AlertListParams } from "@/features/alerts/types";
import { api } from "@/lib/api-client";
import type { Alert, Envelope } from "@/types/api";

export const getAlertsApi = api.injectEndpoints({
  endpoints: (build) => ({
    alertsList: build.query<AlertList, AlertListParams>({
      query: (params) => ({ url: "/alerts", params: { ...params } }),
      transformResponse: (r: Envelope<{ alerts: Alert[] }>) => ({
        alerts: r.data.alerts,
        meta: r.meta as unknown as AlertListMeta,
      }),
      providesTags: (result) => [
        { type: "Alert" as const, id: "LIST" },
        ...(result?.alerts ?? []).map((a) => ({ type: "Alert" as const, id: a.id })),
      ],
    }),
  }),
});

export const { useAlertsListQuery } = getAlertsApi;
export const fetchAlerts = getAlertsApi.endpoints.alertsList.initiate;
