-- Device profiles (DESIGN.md 4.2a, seed 002's device parameters): per channel, where the value
-- is (MQTT topic pattern and payload path), how it is encoded, its sensor type, unit and default
-- thresholds. The channel format is validated by iotmon.profiles.models before it is written.
CREATE TABLE device_profiles (
    name        text CONSTRAINT pk_device_profiles PRIMARY KEY,
    description text NOT NULL DEFAULT '',
    channels    jsonb NOT NULL CONSTRAINT ck_device_profiles_channels CHECK (jsonb_typeof(channels) = 'array'),
    created_at  timestamptz NOT NULL DEFAULT now(),
    updated_at  timestamptz NOT NULL DEFAULT now()
);

ALTER TABLE devices ADD COLUMN profile text
    CONSTRAINT fk_devices_profile REFERENCES device_profiles (name) ON UPDATE CASCADE ON DELETE RESTRICT;
CREATE INDEX ix_devices_profile ON devices (profile) WHERE profile IS NOT NULL;

-- The five devices of the specification publish one JSON number each on
-- devices/{device}/telemetry: {"timestamp": "...Z", "value": 23.5}.
INSERT INTO device_profiles (name, description, channels) VALUES
('spec-temperature', 'Temperature sensor of the specification (JSON number, celsius)',
 '[{"name": "value", "topic": "devices/{device}/telemetry", "path": "value", "timestampPath": "timestamp",
    "encoding": "json_number", "sensorType": "temperature", "unit": "celsius",
    "thresholds": {"normalMin": 20, "normalMax": 80, "alertMin": 15, "alertMax": 85}}]'),
('spec-pressure', 'Pressure sensor of the specification (JSON number, psi)',
 '[{"name": "value", "topic": "devices/{device}/telemetry", "path": "value", "timestampPath": "timestamp",
    "encoding": "json_number", "sensorType": "pressure", "unit": "psi",
    "thresholds": {"normalMin": 10, "normalMax": 50, "alertMin": 5, "alertMax": 55}}]'),
('spec-vibration', 'Vibration sensor of the specification (JSON number, hz)',
 '[{"name": "value", "topic": "devices/{device}/telemetry", "path": "value", "timestampPath": "timestamp",
    "encoding": "json_number", "sensorType": "vibration", "unit": "hz",
    "thresholds": {"normalMin": 0, "normalMax": 100, "alertMin": null, "alertMax": 120}}]'),
('spec-production', 'Production counter of the specification (JSON number, units/hour)',
 '[{"name": "value", "topic": "devices/{device}/telemetry", "path": "value", "timestampPath": "timestamp",
    "encoding": "json_number", "sensorType": "production", "unit": "units/hour",
    "thresholds": {"normalMin": 100, "normalMax": 500, "alertMin": 50, "alertMax": null}}]'),
('spec-quality', 'Quality sensor of the specification (JSON number, percentage)',
 '[{"name": "value", "topic": "devices/{device}/telemetry", "path": "value", "timestampPath": "timestamp",
    "encoding": "json_number", "sensorType": "quality", "unit": "percentage",
    "thresholds": {"normalMin": 85, "normalMax": 100, "alertMin": 80, "alertMax": null}}]'),
-- Seed 002's F2 Smart Controller: cmnd/{device}/<mode>/<connector>/<component>.
('f2-smart-controller', 'F2 Smart Controller (seed 002): door sensors, electric strike, exit buttons, motion, siren, QR/NFC readers, RS-485 temperature/humidity/pressure',
 '[{"name": "door-sensor-1", "topic": "cmnd/{device}/access-control-mode/+/door-sensors", "path": "door-sensor-1",
    "timestampPath": "timestamp", "encoding": "json_boolean", "sensorType": "door", "unit": "open"},
   {"name": "door-sensor-2", "topic": "cmnd/{device}/access-control-mode/+/door-sensors", "path": "door-sensor-2",
    "timestampPath": "timestamp", "encoding": "json_boolean", "sensorType": "door", "unit": "open"},
   {"name": "electric-strike", "topic": "cmnd/{device}/access-control-mode/+/electric-strike", "path": "electric-strike",
    "timestampPath": "timestamp", "encoding": "json_boolean", "sensorType": "strike", "unit": "released"},
   {"name": "exit-button-1", "topic": "cmnd/{device}/access-control-mode/+/exit-buttons", "path": "exit-button-1",
    "timestampPath": "timestamp", "encoding": "json_boolean", "sensorType": "button", "unit": "pressed"},
   {"name": "exit-button-2", "topic": "cmnd/{device}/access-control-mode/+/exit-buttons", "path": "exit-button-2",
    "timestampPath": "timestamp", "encoding": "json_boolean", "sensorType": "button", "unit": "pressed"},
   {"name": "motion", "topic": "cmnd/{device}/alarm-mode/+/motion-sensor", "path": "motion",
    "timestampPath": "timestamp", "encoding": "json_boolean", "sensorType": "motion", "unit": "detected"},
   {"name": "siren", "topic": "cmnd/{device}/alarm-mode/+/siren", "path": "siren",
    "timestampPath": "timestamp", "encoding": "json_boolean", "sensorType": "siren", "unit": "on",
    "thresholds": {"normalMin": null, "normalMax": 0, "alertMin": null, "alertMax": 0.5}},
   {"name": "qr-reader", "topic": "cmnd/{device}/access-control-mode/+/qr-reader", "path": null,
    "encoding": "string", "sensorType": "access_read", "unit": "read"},
   {"name": "nfc-reader", "topic": "cmnd/{device}/access-control-mode/+/nfc-reader", "path": null,
    "encoding": "string", "sensorType": "access_read", "unit": "read"},
   {"name": "temperature", "topic": "cmnd/{device}/rs485-mode/+/sensor-data", "path": "data",
    "timestampPath": "timestamp", "encoding": "hex_register",
    "register": {"byteOffset": 0, "length": 2, "signed": true, "endian": "big", "scale": 0.1, "offset": 0},
    "sensorType": "temperature", "unit": "celsius",
    "thresholds": {"normalMin": 10, "normalMax": 35, "alertMin": 5, "alertMax": 40}},
   {"name": "humidity", "topic": "cmnd/{device}/rs485-mode/+/sensor-data", "path": "data",
    "timestampPath": "timestamp", "encoding": "hex_register",
    "register": {"byteOffset": 2, "length": 2, "signed": false, "endian": "big", "scale": 0.1, "offset": 0},
    "sensorType": "humidity", "unit": "percent",
    "thresholds": {"normalMin": 30, "normalMax": 60, "alertMin": 20, "alertMax": 70}},
   {"name": "pressure", "topic": "cmnd/{device}/rs485-mode/+/sensor-data", "path": "data",
    "timestampPath": "timestamp", "encoding": "hex_register",
    "register": {"byteOffset": 4, "length": 4, "signed": false, "endian": "big", "scale": 0.01, "offset": 0},
    "sensorType": "pressure", "unit": "hpa",
    "thresholds": {"normalMin": 950, "normalMax": 1050, "alertMin": 900, "alertMax": 1100}}]');

UPDATE devices SET profile = 'spec-' || device_type
 WHERE device_id IN ('device-001', 'device-002', 'device-003', 'device-004', 'device-005');
