import { api } from "@/lib/api-client";
import type { DeviceDetails, Envelope } from "@/types/api";

const deviceApi = api.injectEndpoints({
  endpoints: (build) => ({
    getDevice: build.query<DeviceDetails, string>({
      query: (deviceId) => `/devices/${encodeURIComponent(deviceId)}`,
      transformResponse: (r: Envelope<DeviceDetails>) => r.data,
      providesTags: (_result, _error, deviceId) => [{ type: "Device", id: deviceId }],
    }),
  }),
});

export const { useGetDeviceQuery } = deviceApi;
