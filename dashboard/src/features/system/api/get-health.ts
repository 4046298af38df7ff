import type { Health } from "@/features/system/types/health";
import { api } from "@/lib/api-client";

const healthApi = api.injectEndpoints({
  endpoints: (build) => ({
    getHealth: build.query<Health, void>({
      // 503 carries the same body: an unhealthy system is an answer, not a failed request.
      query: () => ({
        url: "/health",
        validateStatus: (response) => response.status === 200 || response.status === 503,
      }),
      providesTags: [{ type: "Metrics", id: "health" }],
    }),
  }),
});

export const { useGetHealthQuery } = healthApi;
