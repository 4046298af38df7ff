-- State alerts (alert type state_duration): a profile channel's "stateAlert" says which value
-- alerts when it lasts at least forSeconds (validated by iotmon.profiles.models.StateAlert).
-- Seed 002's F2 controller gets defaults: a door open (1) for more than 30 s, the siren
-- sounding (1) for more than 10 s. Merged into each channel (whatever else a channel says is
-- kept); a channel that already has a stateAlert keeps its own.
UPDATE device_profiles p
   SET channels = (
       SELECT jsonb_agg(
                  CASE
                      WHEN c ? 'stateAlert' THEN c
                      WHEN c->>'name' IN ('door-sensor-1', 'door-sensor-2') THEN c || jsonb_build_object(
                          'stateAlert', jsonb_build_object(
                              'state', 1, 'forSeconds', 30, 'severity', 'medium',
                              'message', 'door open'))
                      WHEN c->>'name' = 'siren' THEN c || jsonb_build_object(
                          'stateAlert', jsonb_build_object(
                              'state', 1, 'forSeconds', 10, 'severity', 'high',
                              'message', 'siren on'))
                      ELSE c
                  END
                  ORDER BY i)
         FROM jsonb_array_elements(p.channels) WITH ORDINALITY AS t(c, i)),
       updated_at = now()
 WHERE p.name = 'f2-smart-controller';
