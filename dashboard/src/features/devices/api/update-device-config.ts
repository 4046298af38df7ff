import { api } from "@/lib/api-client";
import type { DeviceDetails, Envelope, StateAlert } from "@/types/api";

export type DeviceStatusValue = "active" | "inactive" | "maintenance" | "unregistered";

/** Only the fields given change; thresholds and offlineTimeoutS may be null. */
export interface ConfigChanges {
  normalMin?: number | null;
  normalMax?: number | null;
  alertMin?: number | null;
  alertMax?: number | null;
  intervalMs?: number;
  location?: string;
  status?: DeviceStatusValue;
  offlineTimeoutS?: number | null;
  stateAlert?: Partial<StateAlert> | false | null;
}

export type DeviceConfig = Omit<
  DeviceDetails,
  "connectivity" | "current" | "stats1h" | "stats24h" | "alertStatus" | "openAlerts"
>;

const configApi = api.injectEndpoints({
  endpoints: (build) => ({
    updateDeviceConfig: build.mutation<DeviceConfig, { deviceId: string; changes: ConfigChanges }>({
      query: ({ deviceId, changes }) => ({
        url: `/devices/${encodeURIComponent(deviceId)}/config`,
        method: "PUT",
        body: changes,
      }),
      transformResponse: (r: Envelope<DeviceConfig>) => r.data,
      invalidatesTags: (_result, _error, { deviceId }) => [
        { type: "Device", id: deviceId },
        { type: "Device", id: "LIST" },
      ],
    }),
  }),
});

export const { useUpdateDeviceConfigMutation } = configApi;
