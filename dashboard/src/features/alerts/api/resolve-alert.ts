// PUT /api/alerts/{id}/resolve (operator), optimistic; 409 when resolved already.
import toast from "react-hot-toast";

import { optimisticAction } from "@/features/alerts/api/alert-cache";
import type { AlertAction } from "@/features/alerts/types";
import { api, errorMessage } from "@/lib/api-client";
import type { Alert, Envelope } from "@/types/api";

export const resolveAlertApi = api.injectEndpoints({
  endpoints: (build) => ({
    resolveAlert: build.mutation<Alert, AlertAction>({
      query: ({ id, note }) => ({
        url: `/alerts/${id}/resolve`,
        method: "PUT",
        body: note ? { note } : {},
      }),
      transformResponse: (r: Envelope<Alert>) => r.data,
      onQueryStarted: (arg, lifecycle) =>
        optimisticAction("resolve", arg, lifecycle, (m) => toast.error(m), errorMessage),
    }),
  }),
});

export const { useResolveAlertMutation } = resolveAlertApi;
export const resolveAlert = resolveAlertApi.endpoints.resolveAlert.initiate;
