// DELETE /api/silences/{id} (operator): end a silence now.
import { api } from "@/lib/api-client";

export const deleteSilenceApi = api.injectEndpoints({
  endpoints: (build) => ({
    deleteSilence: build.mutation<{ deleted: number }, number>({
      query: (id) => ({ url: `/silences/${id}`, method: "DELETE" }),
      transformResponse: (r: { data: { deleted: number } }) => r.data,
      invalidatesTags: (_r, _e, id) => [
        { type: "Silence", id },
        { type: "Silence", id: "LIST" },
      ],
    }),
  }),
});

export const { useDeleteSilenceMutation } = deleteSilenceApi;
export const deleteSilence = deleteSilenceApi.endpoints.deleteSilence.initiate;
