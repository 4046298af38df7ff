-- MQTT device credentials (issue 12): the record of what was issued to each device. The broker
-- (Mosquitto's dynamic security plugin) enforces them; this table keeps who got what and when,
-- with the password only as a hash: Mosquitto's own "$7$" format (PBKDF2-HMAC-SHA512, salted),
-- which a mosquitto password file accepts as is. At most one live credential per device.
CREATE TABLE mqtt_credential (
    id            bigint GENERATED ALWAYS AS IDENTITY CONSTRAINT pk_mqtt_credential PRIMARY KEY,
    device_id     text NOT NULL
                  CONSTRAINT fk_mqtt_credential_device REFERENCES devices (device_id) ON DELETE CASCADE,
    username      text NOT NULL,
    password_hash text NOT NULL CONSTRAINT ck_mqtt_credential_hash CHECK (password_hash LIKE '$7$%'),
    topics        text[] NOT NULL,
    created_at    timestamptz NOT NULL DEFAULT now(),
    created_by    text NOT NULL,
    revoked_at    timestamptz,
    revoked_by    text
);

CREATE UNIQUE INDEX ux_mqtt_credential_live ON mqtt_credential (device_id) WHERE revoked_at IS NULL;
CREATE INDEX ix_mqtt_credential_device_id ON mqtt_credential (device_id, created_at DESC);
