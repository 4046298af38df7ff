-- Which Kafka partition of a topic each device's readings came through, as ingestion stored
-- them (one row per device and partition, written with the readings, in their transaction).
-- A processing member rebuilds the windows of the devices of its own partitions only: N
-- members hold 1/N of the fleet each, and none writes statistics of a device another member
-- counts. Readings keyed by device id (the simulator, the MQTT decoder, any keyed producer)
-- keep a device on one partition.
CREATE TABLE device_partitions (
    bus_id      text NOT NULL,
    topic       text NOT NULL,
    device_id   text NOT NULL,
    "partition" integer NOT NULL,
    first_seen  timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT pk_device_partitions PRIMARY KEY (bus_id, topic, "partition", device_id)
);
