/// <reference types="vite/client" />

interface ImportMetaEnv {
  readonly VITE_IOTMON_API?: string;
}
