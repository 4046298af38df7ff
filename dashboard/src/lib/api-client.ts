// The one API client: RTK Query over fetch, the bearer token from the session, the envelope
// unwrapped, a 401 logs out. Features add their endpoints with `api.injectEndpoints` (one
// kebab-case file per endpoint, exporting its hook).
import {
  createApi,
  fetchBaseQuery,
  type BaseQueryFn,
  type FetchArgs,
  type FetchBaseQueryError,
} from "@reduxjs/toolkit/query/react";

import { env } from "@/config/env";
import { loggedOut, type SessionState } from "@/lib/session";
import type { ApiErrorBody } from "@/types/api";

const raw = fetchBaseQuery({
  // Absolute even on the same origin (fetch outside a browser cannot resolve "/api").
  baseUrl: `${env.apiBase || globalThis.location?.origin || ""}/api`,
  prepareHeaders: (headers, { getState }) => {
    const session = (getState() as { session: SessionState }).session.session;
    if (session) headers.set("Authorization", `Bearer ${session.token}`);
    return headers;
  },
});

const baseQuery: BaseQueryFn<string | FetchArgs, unknown, FetchBaseQueryError> = async (
  args,
  store,
  extra,
) => {
  const result = await raw(args, store, extra);
  if (result.error?.status === 401) store.dispatch(loggedOut());
  return result;
};

export const api = createApi({
  reducerPath: "api",
  baseQuery,
  tagTypes: ["Device", "Alert", "Silence", "Metrics", "Analytics"],
  endpoints: () => ({}),
});

/** A person-readable message for any error RTK Query hands back. */
export function errorMessage(error: unknown): string {
  if (error && typeof error === "object" && "status" in error) {
    const e = error as FetchBaseQueryError;
    const body = e.data as ApiErrorBody | undefined;
    if (body && typeof body === "object" && body.error?.message) return body.error.message;
    if (e.status === "FETCH_ERROR") return "the server cannot be reached";
    return `request failed (${String(e.status)})`;
  }
  return error instanceof Error ? error.message : "something went wrong";
}
