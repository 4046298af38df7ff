// POST /api/silences (operator): mute a device and/or an alert type for a while.
import type { NewSilence } from "@/features/alerts/types";
import { api } from "@/lib/api-client";
import type { Envelope, Silence } from "@/types/api";

export const createSilenceApi = api.injectEndpoints({
  endpoints: (build) => ({
    createSilence: build.mutation<Silence, NewSilence>({
      query: (body) => ({ url: "/silences", method: "POST", body }),
      transformResponse: (r: Envelope<Silence>) => r.data,
      invalidatesTags: [{ type: "Silence", id: "LIST" }],
    }),
  }),
});

export const { useCreateSilenceMutation } = createSilenceApi;
export const createSilence = createSilenceApi.endpoints.createSilence.initiate;
