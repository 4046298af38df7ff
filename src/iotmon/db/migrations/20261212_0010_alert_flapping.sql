-- Flap detection (issue 16): an alert opened, or found open, while its (device, type) changes
-- state more often than the engine's flap threshold is marked flapping; its notifications are
-- held back. The (device, type)'s latest alert carries the flag until the flapping settles, so
-- a restarted alerts role knows it is still flapping (the changes themselves are counted from
-- alert_transitions).
ALTER TABLE alerts ADD COLUMN flapping boolean NOT NULL DEFAULT false;

CREATE INDEX ix_alerts_flapping ON alerts (device_id, alert_type, id) WHERE flapping;
CREATE INDEX ix_alert_transitions_created_at ON alert_transitions (created_at);
