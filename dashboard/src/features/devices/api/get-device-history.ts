import { api } from "@/lib/api-client";
import type { Envelope, History } from "@/types/api";

export interface HistoryArgs {
  deviceId: string;
  from: string; // ISO 8601
  /** ISO 8601; none = until now (the server's now: what was stored up to the answer). */
  to?: string;
  limit?: number;
}

const historyApi = api.injectEndpoints({
  endpoints: (build) => ({
    getDeviceHistory: build.query<History, HistoryArgs>({
      query: ({ deviceId, from, to, limit = 500 }) => ({
        url: `/devices/${encodeURIComponent(deviceId)}/history`,
        params: { from, to, limit },
      }),
      transformResponse: (r: Envelope<History>) => r.data,
      keepUnusedDataFor: 30,
    }),
  }),
});

export const { useGetDeviceHistoryQuery } = historyApi;
