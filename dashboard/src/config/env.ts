// Checked once at start: a missing or malformed setting fails loudly, not halfway through.
const apiBase = import.meta.env.VITE_IOTMON_API ?? "";

if (apiBase && !/^https?:\/\//.test(apiBase)) {
  throw new Error(`VITE_IOTMON_API must be an http(s) URL, got ${JSON.stringify(apiBase)}`);
}

export const env = {
  /** "" = same origin (the web role serves the dashboard). */
  apiBase,
  /** Live chart window, in points per device. */
  livePoints: 600,
} as const;
