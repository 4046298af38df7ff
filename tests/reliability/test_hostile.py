"""Hostile input through the whole running system: every role its own process on a private
Kafka, PostgreSQL and Redis; a second producer writes the corpus of nasty payloads
(tests/corpus.py) interleaved with good readings into ``sensors-data``, and hostile alert
candidates into ``alerts``.

Afterwards: every good reading is stored exactly once, every hostile record is in the DLQ
with a reason, the live statistics equal a recomputation from PostgreSQL, a scenario still
raises its alert, and no role process exited or was restarted.

The tests of this module share one running system and run in order (the last one stops the
simulator to compare the statistics at rest).
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import orjson
import pytest
from confluent_kafka import KafkaError, KafkaException

from tests.corpus import hostile_readings
from tests.reliability.system import (
    PrivateInfra,
    System,
    alert_problems,
    start_scenario,
    stats_mismatches,
    wait_for,
)

pytestmark = [pytest.mark.reliability, pytest.mark.timeout(600)]

SIM_DEVICES = [f"device-00{i}" for i in range(1, 6)]
GOOD_DEVICES = [f"good-{i:02d}" for i in range(1, 5)]
ROUNDS = 3
HEADER = "x-test-record"


@pytest.fixture(scope="module")
def system(
    private_infra: PrivateInfra, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[System]:
    s = System(
        private_infra,
        tmp_path_factory.mktemp("hostile"),
        IOTMON_SIMULATOR_DEVICES="5",
        IOTMON_STATS_INTERVAL_S="0",  # statistics written every flush: compared at rest
    )
    s.prepare()
    for role in ("web", "ingestion", "processing", "alerts", "simulator"):
        s.start(role)
    try:
        s.wait_healthy()
        s.initial_pids = s.pids()  # type: ignore[attr-defined]
        yield s
    finally:
        problems = s.stop_all()
        s.close()
        assert not problems, "\n".join(problems)


def good_reading(device: str, n: int, at: datetime) -> bytes:
    return orjson.dumps(
        {
            "deviceId": device,
            "timestamp": at.isoformat(timespec="milliseconds").replace("+00:00", "Z"),
            "sensorType": "temperature",
            "value": round(40 + (n % 23) * 0.5 + n / 1000, 3),
            "unit": "celsius",
            "location": "bench",
        }
    )


def hostile_candidates() -> list[tuple[str, bytes | None]]:
    """What a broken or malicious producer could put on the ``alerts`` topic."""

    def j(obj: Any) -> bytes:
        return orjson.dumps(obj)

    return [
        ("empty", b""),
        ("tombstone", None),
        ("null", b"null"),
        ("array", b"[1,2]"),
        ("truncated", b'{"deviceId":"evil-a","type":"threshold_exc'),
        ("invalid UTF-8", b'{"deviceId":"evil-\xff\xfe","type":"threshold_exceeded"}'),
        ("deep nesting", b'{"deviceId":"evil-b","x":' + b"[" * 5000 + b"]" * 5000 + b"}"),
        ("NaN literal", b'{"deviceId":"evil-c","type":"threshold_exceeded","value":NaN}'),
        ("device id a number", j({"deviceId": 5, "type": "threshold_exceeded", "value": 99})),
        ("unknown type", j({"deviceId": "evil-d", "type": "meltdown", "value": 99})),
        ("value a string", j({"deviceId": "evil-e", "type": "threshold_exceeded", "value": "x"})),
        (
            "threshold an object",
            j({"deviceId": "evil-f", "type": "threshold_exceeded", "value": 9, "threshold": {}}),
        ),
        (
            "value 1e308",
            j(
                {
                    "deviceId": "evil-g",
                    "type": "threshold_exceeded",
                    "value": 1e308,
                    "threshold": -1e308,
                }
            ),
        ),
        ("zscore a list", j({"deviceId": "evil-h", "type": "data_anomaly", "zscore": [1]})),
        ("NUL in device id", j({"deviceId": "evil\u0000i", "type": "threshold_exceeded"})),
        ("lone surrogate", b'{"deviceId":"evil-\\ud800","type":"threshold_exceeded","value":1}'),
        ("device id 100 KB", j({"deviceId": "e" * 100_000, "type": "threshold_exceeded"})),
        (
            "timestamp year 9999",
            j(
                {
                    "deviceId": "evil-j",
                    "type": "device_offline",
                    "timestamp": "9999-12-31T23:59:59Z",
                }
            ),
        ),
        ("timestamp garbage", j({"deviceId": "evil-k", "type": "trend_warning", "timestamp": 7})),
        (
            "unit 900 KB",
            j({"deviceId": "evil-l", "type": "threshold_exceeded", "unit": "u" * 900_000}),
        ),
    ]


def produce_storm(system: System) -> tuple[dict[str, tuple[str, bytes]], dict[str, list[datetime]]]:
    """ROUNDS rounds of the whole hostile corpus, each record between good readings; returns
    the hostile records by id (header) and the good readings' timestamps per device."""
    producer = system.bus.producer(name="hostile-producer")
    topic = system.topic("sensors-data")
    hostile: dict[str, tuple[str, bytes]] = {}
    good: dict[str, list[datetime]] = {d: [] for d in GOOD_DEVICES}
    n = 0
    base = datetime.now(UTC).replace(microsecond=0) - timedelta(seconds=30)  # whole ms
    for round_ in range(ROUNDS):
        for k, (name, raw) in enumerate(hostile_readings()):
            device = GOOD_DEVICES[n % len(GOOD_DEVICES)]
            at = base + timedelta(milliseconds=n)
            producer.produce(topic, good_reading(device, n, at), key=device.encode())
            good[device].append(at)
            n += 1
            rid = f"hostile-{round_}-{k}"
            try:
                producer.produce(
                    topic,
                    raw,
                    key=SIM_DEVICES[k % len(SIM_DEVICES)].encode(),
                    headers=[(HEADER, rid.encode())],
                )
            except KafkaException as exc:  # over the topic's size limit: never gets in
                if exc.args[0].code() != KafkaError.MSG_SIZE_TOO_LARGE:
                    raise
                continue
            hostile[rid] = (name, raw)
        # A record with no value at all (a Kafka tombstone) is not a reading either.
        rid = f"hostile-{round_}-tombstone"
        hostile[rid] = ("tombstone (no value)", b"")
        producer.produce(topic, None, key=b"device-001", headers=[(HEADER, rid.encode())])  # type: ignore[arg-type]
        producer.flush(30)
        time.sleep(1.0)  # the next round lands in other batches
    assert producer.flush(30) == 0
    return hostile, good


def test_hostile_readings_are_dead_lettered_and_good_ones_stored_once(system: System) -> None:
    # The flow is established before the storm: the simulator's readings are being stored.
    wait_for(
        lambda: (system.ingested()[0] > 20, f"{system.ingested()[0]} readings stored"),
        "the simulator's readings stored",
        90,
        system,
    )
    hostile, good = produce_storm(system)
    ends = sum(system.end_offsets("sensors-data"))

    def caught_up() -> tuple[bool, str]:
        rows, _, offsets = system.ingested()
        return offsets >= ends, f"ingestion at offset {offsets:,} of {ends:,} ({rows:,} rows)"

    wait_for(caught_up, "ingestion past the storm", 120, system)

    # Every hostile record is in the DLQ with a reason (at least once: dedupe by source).
    dlq = system.dlq()
    reasons: dict[str, set[str]] = {}
    sources: set[bytes] = set()
    for _value, headers in dlq:
        rid = headers.get(HEADER)
        reason = headers.get("x-iotmon-reason", b"")
        if rid is not None and rid.startswith(b"hostile-"):
            reasons.setdefault(rid.decode(), set()).add(reason.decode(errors="replace"))
            sources.add(headers.get("x-iotmon-source", b""))
    missing = sorted({hostile[r][0] for r in hostile if r not in reasons})
    assert not missing, f"{len(missing)} hostile records not in the DLQ: {missing}"
    no_reason = sorted({hostile[r][0] for r, why in reasons.items() if r in hostile and "" in why})
    assert not no_reason, f"DLQ entries without x-iotmon-reason: {no_reason}"
    assert len(sources) == len(hostile), (len(sources), len(hostile))
    unexpected = [h for _, h in dlq if HEADER not in h]
    assert not unexpected, f"{len(unexpected)} good readings dead-lettered: {unexpected[:3]}"

    # Exactly once: in one snapshot, rows = committed offsets - the hostile records among
    # them, and no (device, timestamp) twice.
    rows, distinct, offsets = system.ingested()
    assert rows == distinct, f"{rows - distinct} readings stored twice"
    assert rows == offsets - len(hostile), (
        f"{rows:,} rows for {offsets:,} messages of which {len(hostile)} hostile"
    )
    for device, stamps in good.items():
        stored = system.query(
            'SELECT "timestamp", count(*) FROM sensor_readings WHERE device_id = %s GROUP BY 1',
            (device,),
        )
        counts = {ts: n for ts, n in stored}
        lost = [t for t in stamps if t not in counts]
        doubled = {t: n for t, n in counts.items() if n != 1}
        assert not lost, f"{device}: {len(lost)} of {len(stamps)} good readings not stored"
        assert not doubled, f"{device}: stored more than once: {doubled}"
        assert len(counts) == len(stamps), f"{device}: {len(counts)} stored, sent {len(stamps)}"
    system.assert_unchanged(system.initial_pids)  # type: ignore[attr-defined]


def test_hostile_alert_candidates_do_not_stop_alerts_and_a_scenario_still_fires(
    system: System,
) -> None:
    producer = system.bus.producer(name="hostile-candidates")
    topic = system.topic("alerts")
    candidates = hostile_candidates()
    for k, (_name, raw) in enumerate(candidates):
        producer.produce(
            topic,
            raw,
            key=b"device-002",
            headers=[(HEADER, f"candidate-{k}".encode())],  # type: ignore[arg-type]
        )
    assert producer.flush(30) == 0
    ends = sum(system.end_offsets("alerts"))
    group = f"{system.prefix}alerts"

    def consumed() -> tuple[bool, str]:
        done = system.committed(group, "alerts")
        return done >= ends, f"alerts committed {done} of {ends} candidates"

    wait_for(consumed, "the alerts role past the hostile candidates", 60, system)

    # The alerts role goes on: a high scenario on device-001 raises threshold_exceeded.
    start_scenario(system, "device-001", "high", 20)

    def fired() -> tuple[bool, str]:
        rows = system.query(
            "SELECT id, status FROM alerts WHERE device_id = 'device-001'"
            " AND alert_type = 'threshold_exceeded' AND status <> 'resolved'"
        )
        return bool(rows), f"open threshold_exceeded alerts of device-001: {rows}"

    wait_for(fired, "the scenario's alert", 90, system)
    wait_for(
        lambda: (not (p := alert_problems(system)), "; ".join(p)),
        "open alerts mirrored in alerts:active",
        30,
        system,
    )
    # Nothing was made of the malformed candidates.
    made = system.query(
        "SELECT device_id, alert_type, value FROM alerts WHERE device_id LIKE 'evil%%'"
        " AND device_id NOT IN ('evil-g', 'evil-j', 'evil-k', 'evil-l')"
    )
    assert not made, f"alerts made of malformed candidates: {made}"
    system.assert_unchanged(system.initial_pids)  # type: ignore[attr-defined]


def test_statistics_equal_a_recomputation_and_no_role_restarted(system: System) -> None:
    system.assert_unchanged(system.initial_pids)  # type: ignore[attr-defined]
    # At rest: stop the simulator (cleanly), let ingestion and processing drain.
    assert system.stop("simulator") == 0, system.retired[-1].tail()
    ends = sum(system.end_offsets("sensors-data"))

    def drained() -> tuple[bool, str]:
        rows, _, offsets = system.ingested()
        return offsets >= ends, f"ingestion at offset {offsets:,} of {ends:,} ({rows:,} rows)"

    wait_for(drained, "ingestion drained", 60, system)
    devices = SIM_DEVICES + GOOD_DEVICES

    def equal() -> tuple[bool, str]:
        problems = stats_mismatches(system, devices)
        return not problems, "; ".join(problems)

    wait_for(equal, "live statistics equal a recomputation from PostgreSQL", 60, system)
    rows, distinct, _ = system.ingested()
    assert rows == distinct, f"{rows - distinct} readings stored twice"
    pids = dict(system.initial_pids)  # type: ignore[attr-defined]
    del pids["simulator"]
    system.assert_unchanged(pids)
