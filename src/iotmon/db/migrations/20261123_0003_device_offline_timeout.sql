-- Each device's own offline timeout (NULL = the alerts role's default, 30 s).
ALTER TABLE devices ADD COLUMN offline_timeout_s double precision
    CONSTRAINT ck_devices_offline_timeout_s CHECK (offline_timeout_s > 0);
