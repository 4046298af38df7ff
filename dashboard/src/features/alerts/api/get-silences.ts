// GET /api/silences: silences not over yet.
import { api } from "@/lib/api-client";
import type { Envelope, Silence } from "@/types/api";

export const getSilencesApi = api.injectEndpoints({
  endpoints: (build) => ({
    silencesList: build.query<Silence[], void>({
      query: () => "/silences",
      transformResponse: (r: Envelope<{ silences: Silence[] }>) => r.data.silences,
      providesTags: (result) => [
        { type: "Silence" as const, id: "LIST" },
        ...(result ?? []).map((s) => ({ type: "Silence" as const, id: s.id })),
      ],
    }),
  }),
});

export const { useSilencesListQuery } = getSilencesApi;
export const fetchSilences = getSilencesApi.endpoints.silencesList.initiate;
