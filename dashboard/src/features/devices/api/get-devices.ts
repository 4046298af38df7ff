import { api } from "@/lib/api-client";
import type { DeviceSummary, Envelope } from "@/types/api";

export interface DeviceList {
  devices: DeviceSummary[];
  totalDevices: number;
  activeDevices: number;
}

/** Live values come from Socket.IO; this list is the start and a fallback poll. */
export const DEVICES_POLL_MS = 30_000;

const devicesApi = api.injectEndpoints({
  endpoints: (build) => ({
    listDevices: build.query<DeviceList, void>({
      query: () => ({ url: "/devices", params: { limit: 1000 } }),
      transformResponse: (r: Envelope<{ devices: DeviceSummary[] }>) => ({
        devices: r.data.devices,
        totalDevices: Number(r.meta.totalDevices ?? r.data.devices.length),
        activeDevices: Number(r.meta.activeDevices ?? 0),
      }),
      providesTags: (result) => [
        { type: "Device" as const, id: "LIST" },
        ...(result?.devices ?? []).map((d) => ({ type: "Device" as const, id: d.deviceId })),
      ],
    }),
  }),
});

export const { useListDevicesQuery } = devicesApi;

/** Every device (up to 1000), polled every 30 s. */
export function useDevices() {
  return useListDevicesQuery(undefined, { pollingInterval: DEVICES_POLL_MS });
}
