-- The tables of the specification (DESIGN.md 4.4), with values as double precision.
-- Naming: pk_/uq_/fk_/ck_/ix_ prefixes, <table>_<columns>.

CREATE TABLE devices (
    device_id   text PRIMARY KEY,
    device_type text NOT NULL,
    location    text NOT NULL DEFAULT 'unknown',
    unit        text,
    normal_min  double precision,
    normal_max  double precision,
    alert_min   double precision,
    alert_max   double precision,
    interval_ms integer NOT NULL DEFAULT 1000 CONSTRAINT ck_devices_interval_ms CHECK (interval_ms > 0),
    status      text NOT NULL DEFAULT 'active'
        CONSTRAINT ck_devices_status CHECK (status IN ('active', 'inactive', 'maintenance', 'unregistered')),
    metadata    jsonb NOT NULL DEFAULT '{}'::jsonb,
    created_at  timestamptz NOT NULL DEFAULT now(),
    updated_at  timestamptz NOT NULL DEFAULT now()
);

-- Partitioned by day on "timestamp"; partitions are created ahead by iotmon.db.partitions and
-- dropped whole when they pass the retention period. No surrogate id: exactly-once comes from
-- the offsets committed with each batch, and a sequence would cost every row of every COPY.
CREATE TABLE sensor_readings (
    device_id   text NOT NULL,
    "timestamp" timestamptz NOT NULL,
    sensor_type text NOT NULL,
    value       double precision NOT NULL,
    unit        text NOT NULL,
    location    text,
    status      text NOT NULL DEFAULT 'active',
    metadata    jsonb,
    created_at  timestamptz NOT NULL DEFAULT now()
) PARTITION BY RANGE ("timestamp");

CREATE INDEX ix_sensor_readings_device_id_timestamp ON sensor_readings (device_id, "timestamp" DESC);

CREATE TABLE alerts (
    id              bigint GENERATED ALWAYS AS IDENTITY CONSTRAINT pk_alerts PRIMARY KEY,
    device_id       text NOT NULL,
    alert_type      text NOT NULL,
    message         text NOT NULL,
    severity        text NOT NULL DEFAULT 'medium'
        CONSTRAINT ck_alerts_severity CHECK (severity IN ('low', 'medium', 'high', 'critical')),
    value           double precision,
    threshold       double precision,
    status          text NOT NULL DEFAULT 'triggered'
        CONSTRAINT ck_alerts_status CHECK (status IN ('triggered', 'acknowledged', 'escalated', 'resolved')),
    triggered_at    timestamptz NOT NULL,
    acknowledged_at timestamptz,
    resolved_at     timestamptz,
    created_at      timestamptz NOT NULL DEFAULT now()
);

CREATE INDEX ix_alerts_device_id_status ON alerts (device_id, status);
CREATE INDEX ix_alerts_triggered_at ON alerts (triggered_at DESC);

CREATE TABLE device_stats_hourly (
    device_id       text NOT NULL,
    hour_timestamp  timestamptz NOT NULL,
    avg_value       double precision,
    min_value       double precision,
    max_value       double precision,
    count_readings  integer NOT NULL,
    std_deviation   double precision,
    created_at      timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT pk_device_stats_hourly PRIMARY KEY (device_id, hour_timestamp)
);

CREATE TABLE system_events (
    id          bigint GENERATED ALWAYS AS IDENTITY CONSTRAINT pk_system_events PRIMARY KEY,
    event_type  text NOT NULL,
    service_name text,
    message     text,
    metadata    jsonb,
    severity    text NOT NULL DEFAULT 'info',
    "timestamp" timestamptz NOT NULL DEFAULT now()
);

CREATE INDEX ix_system_events_event_type_timestamp ON system_events (event_type, "timestamp" DESC);

CREATE TABLE users (
    id            bigint GENERATED ALWAYS AS IDENTITY CONSTRAINT pk_users PRIMARY KEY,
    username      text NOT NULL CONSTRAINT uq_users_username UNIQUE,
    password_hash text NOT NULL,
    role          text NOT NULL DEFAULT 'viewer'
        CONSTRAINT ck_users_role CHECK (role IN ('viewer', 'operator', 'admin')),
    created_at    timestamptz NOT NULL DEFAULT now(),
    updated_at    timestamptz NOT NULL DEFAULT now()
);

-- Where each consumer group stands in each partition of each bus (Kafka cluster or in-process
-- bus instance). Written in the same transaction as the rows the offsets stand for.
CREATE TABLE ingest_offsets (
    bus_id      text NOT NULL,
    group_id    text NOT NULL,
    topic       text NOT NULL,
    "partition" integer NOT NULL,
    next_offset bigint,
    updated_at  timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT pk_ingest_offsets PRIMARY KEY (bus_id, group_id, topic, "partition")
);

INSERT INTO devices (device_id, device_type, location, unit, normal_min, normal_max, alert_min, alert_max, interval_ms)
VALUES
    ('device-001', 'temperature', 'assembly-line-1', 'celsius',     20,  80,   15,   85, 2000),
    ('device-002', 'pressure',    'assembly-line-1', 'psi',         10,  50,    5,   55, 3000),
    ('device-003', 'vibration',   'assembly-line-2', 'hz',           0, 100, NULL,  120, 1000),
    ('device-004', 'production',  'packaging-line-1', 'units/hour', 100, 500,   50, NULL, 5000),
    ('device-005', 'quality',     'quality-control-1', 'percentage', 85, 100,   80, NULL, 4000)
ON CONFLICT (device_id) DO NOTHING;
