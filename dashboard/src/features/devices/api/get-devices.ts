import { api } from "@/lib/api-client";
import type { DeviceSummary, Envelope } from "@/types/api";

export interface DeviceList {
  devices: DeviceSummary[];
  totalDevices: number;
  activeDevices: number;
}

/** Live values come from Socket.IO; this list is the start and a fallback poll. */
export const DEVICES_POLL_MS = 30_000;
/** The most devices one answer holds (the API's limit). */
export const PAGE = 1000;

const devicesApi = api.injectEndpoints({
  endpoints: (build) => ({
    // `q`: part of the id, type or location (server-side, for fleets larger than one page).
    listDevices: build.query<DeviceList, { q?: string } | void>({
      query: (arg) => ({ url: "/devices", params: { limit: PAGE, ...(arg?.q ? { q: arg.q } : {}) } }),
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

/** Every device (the first 1000 by id), polled every 30 s. */
export function useDevices() {
  return useListDevicesQuery(undefined, { pollingInterval: DEVICES_POLL_MS });
}

/**
 * The devices matching `q`, asked of the server, when the fleet is larger than one answer
 * (`partial`): filtering the first 1000 in the browser would not find device 5,000.
 */
export function useDeviceSearch(q: string, partial: boolean) {
  return useListDevicesQuery({ q }, { skip: !partial || !q, pollingInterval: DEVICES_POLL_MS });
}
