// GET /api/alerts/history.csv: the server's CSV (streamed; every alert in [from, to), oldest
// first), fetched through the API client so it carries the bearer token. A mutation: the text
// is handed to the caller and not kept in the cache.
import { api } from "@/lib/api-client";

export interface AlertCsvParams {
  deviceId?: string;
  from?: string;
  to?: string;
}

export const getAlertHistoryCsvApi = api.injectEndpoints({
  endpoints: (build) => ({
    alertHistoryCsv: build.mutation<string, AlertCsvParams>({
      query: (params) => ({
        url: "/alerts/history.csv",
        method: "GET",
        params: { ...params },
        responseHandler: "text",
      }),
    }),
  }),
});

export const { useAlertHistoryCsvMutation } = getAlertHistoryCsvApi;
export const fetchAlertHistoryCsv = getAlertHistoryCsvApi.endpoints.alertHistoryCsv.initiate;
