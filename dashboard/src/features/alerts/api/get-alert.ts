// GET /api/alerts/{id}: one alert with its transitions.
import type { AlertDetails } from "@/features/alerts/types";
import { api } from "@/lib/api-client";
import type { Envelope } from "@/types/api";

export const getAlertApi = api.injectEndpoints({
  endpoints: (build) => ({
    alertDetails: build.query<AlertDetails, number>({
      query: (id) => `/alerts/${id}`,
      transformResponse: (r: Envelope<AlertDetails>) => r.data,
      providesTags: (_r, _e, id) => [{ type: "Alert", id }],
    }),
  }),
});

export const { useAlertDetailsQuery } = getAlertApi;
export const fetchAlert = getAlertApi.endpoints.alertDetails.initiate;
