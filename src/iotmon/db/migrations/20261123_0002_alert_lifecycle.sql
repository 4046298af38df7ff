-- The alert lifecycle (issue: processing and alerts roles): deduplication, who and when,
-- every transition, silences.

ALTER TABLE alerts
    ADD COLUMN count integer NOT NULL DEFAULT 1,
    ADD COLUMN last_value double precision,
    ADD COLUMN last_seen_at timestamptz,
    ADD COLUMN acknowledged_by text,
    ADD COLUMN resolved_by text,
    ADD COLUMN escalated_at timestamptz,
    ADD COLUMN silenced boolean NOT NULL DEFAULT false,
    ADD COLUMN metadata jsonb NOT NULL DEFAULT '{}'::jsonb;

-- One open alert per (device, type): repeats update it.
CREATE UNIQUE INDEX uq_alerts_device_id_alert_type_open ON alerts (device_id, alert_type)
    WHERE status <> 'resolved';

CREATE TABLE alert_transitions (
    id          bigint GENERATED ALWAYS AS IDENTITY CONSTRAINT pk_alert_transitions PRIMARY KEY,
    alert_id    bigint NOT NULL CONSTRAINT fk_alert_transitions_alert_id
                    REFERENCES alerts (id) ON DELETE CASCADE,
    from_status text,
    to_status   text NOT NULL,
    actor       text NOT NULL DEFAULT 'system',
    note        text,
    created_at  timestamptz NOT NULL DEFAULT now()
);

CREATE INDEX ix_alert_transitions_alert_id ON alert_transitions (alert_id, created_at);

CREATE TABLE silences (
    id          bigint GENERATED ALWAYS AS IDENTITY CONSTRAINT pk_silences PRIMARY KEY,
    device_id   text,
    alert_type  text,
    starts_at   timestamptz NOT NULL DEFAULT now(),
    ends_at     timestamptz NOT NULL,
    reason      text,
    created_by  text NOT NULL DEFAULT 'system',
    created_at  timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT ck_silences_period CHECK (ends_at > starts_at),
    CONSTRAINT ck_silences_scope CHECK (device_id IS NOT NULL OR alert_type IS NOT NULL)
);

CREATE INDEX ix_silences_ends_at ON silences (ends_at);
