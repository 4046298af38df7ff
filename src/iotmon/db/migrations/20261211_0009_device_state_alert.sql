-- A device's own state alert (PUT /api/devices/{id}/config {"stateAlert": ...}): NULL = its
-- profile channel's stateAlert, false = none for this device, an object = this one instead
-- (validated by iotmon.profiles.models.StateAlert before it is written).
ALTER TABLE devices ADD COLUMN state_alert jsonb
    CONSTRAINT ck_devices_state_alert CHECK (state_alert IS NULL OR state_alert = 'false'::jsonb
                                             OR jsonb_typeof(state_alert) = 'object');
