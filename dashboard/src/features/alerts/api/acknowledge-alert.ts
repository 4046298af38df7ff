// PUT /api/alerts/{id}/acknowledge (operator), optimistic; 409 when it is not possible.
import toast from "react-hot-toast";

import { optimisticAction } from "@/features/alerts/api/alert-cache";
import type { AlertAction } from "@/features/alerts/types";
import { api, errorMessage } from "@/lib/api-client";
import type { Alert, Envelope } from "@/types/api";

export const acknowledgeAlertApi = api.injectEndpoints({
  endpoints: (build) => ({
    acknowledgeAlert: build.mutation<Alert, AlertAction>({
      query: ({ id, note }) => ({
        url: `/alerts/${id}/acknowledge`,
        method: "PUT",
        body: note ? { note } : {},
      }),
      transformResponse: (r: Envelope<Alert>) => r.data,
      onQueryStarted: (arg, lifecycle) =>
        optimisticAction("acknowledge", arg, lifecycle, (m) => toast.error(m), errorMessage),
    }),
  }),
});

export const { useAcknowledgeAlertMutation } = acknowledgeAlertApi;
export const acknowledgeAlert = acknowledgeAlertApi.endpoints.acknowledgeAlert.initiate;
