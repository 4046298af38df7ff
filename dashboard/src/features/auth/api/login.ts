import { api } from "@/lib/api-client";
import type { Envelope, Token } from "@/types/api";

const loginApi = api.injectEndpoints({
  endpoints: (build) => ({
    login: build.mutation<Token, { username: string; password: string }>({
      query: (body) => ({ url: "/auth/token", method: "POST", body }),
      transformResponse: (r: Envelope<Token>) => r.data,
    }),
  }),
});

export const { useLoginMutation } = loginApi;
