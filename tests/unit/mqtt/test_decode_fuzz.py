"""Whatever arrives from MQTT, the decoder answers readings the reading contract can store, or a
rejection with a reason: never another exception, never ``decoder_error``.

Random bytes and topics, random JSON, mutations of good payloads of every encoding (hypothesis),
and the known nasties of tests/corpus.py."""

from __future__ import annotations

import math
from datetime import UTC, datetime
from typing import Any

import orjson
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from iotmon.bus.pipeline import Rejection
from iotmon.devices.models import VALUE_RANGE
from iotmon.mqtt.decoders import Reason, decode
from iotmon.readings.models import DEVICE_ID, parse
from iotmon.readings.models import Reason as ReadingReason
from tests.corpus import hostile_readings
from tests.unit.mqtt.test_decode import DEV, F2, seeded

NOW = datetime.now(UTC)
FUZZ = settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
SPEC = seeded("spec-temperature")
CLOCK = (ReadingReason.TIMESTAMP_IN_FUTURE, ReadingReason.TIMESTAMP_TOO_OLD)
TOPICS = [
    f"cmnd/{DEV}/access-control-mode/J1/door-sensors",
    f"cmnd/{DEV}/access-control-mode/J1/electric-strike",
    f"cmnd/{DEV}/access-control-mode/J1/exit-buttons",
    f"cmnd/{DEV}/alarm-mode/J4/motion-sensor",
    f"cmnd/{DEV}/alarm-mode/J4/siren",
    f"cmnd/{DEV}/access-control-mode/J2/qr-reader",
    f"cmnd/{DEV}/access-control-mode/J2/nfc-reader",
    f"cmnd/{DEV}/rs485-mode/J3/sensor-data",
]
GOOD: list[bytes] = [
    b'{"timestamp": "2026-01-01T00:00:00Z", "door-sensor-1": false, "door-sensor-2": true}',
    b'{"electric-strike": true}',
    b'{"exit-button-1": false, "exit-button-2": false}',
    b'{"motion": true, "timestamp": 1700000000}',
    b'{"siren": false}',
    b"QR-CODE-1234",
    b"04A224B2C35E80",
    b'{"data": "00E6 0258 00018BCD"}',
]

json_value = st.recursive(
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=30),
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=12), children, max_size=4)
    ),
    max_leaves=12,
)


def verdict(topic: str, payload: bytes, profile: Any = F2) -> list[dict[str, Any]] | Rejection:
    got = decode(topic, payload, NOW, profile)
    if isinstance(got, Rejection):
        assert got.reason in Reason.ALL, got
        assert got.detail
        return got
    assert got, "no readings and no rejection"
    for r in got:
        assert DEVICE_ID.match(r["deviceId"])
        assert math.isfinite(r["value"])
        lo, hi = VALUE_RANGE[r["sensorType"]]  # the profiles here use built-in types only
        assert lo <= r["value"] <= hi
        assert r["timestamp"].endswith("Z")
        encoded = orjson.dumps(r)  # serialisable: no lone surrogate anywhere
        assert b"\\u0000" not in encoded
        if r["sensorType"] in VALUE_RANGE:  # the reading contract takes it (clock rules aside)
            refused: Rejection | None = None
            try:
                parse(encoded, NOW)
            except Rejection as rej:
                refused = rej
            assert refused is None or refused.reason in CLOCK, refused
    return got


def test_good_payloads_of_every_encoding_decode() -> None:
    for topic, payload in zip(TOPICS, GOOD, strict=True):
        assert isinstance(verdict(topic, payload), list), (topic, payload)


@FUZZ
@given(st.sampled_from(TOPICS), st.binary(max_size=300))
def test_random_bytes_on_every_channel(topic: str, payload: bytes) -> None:
    verdict(topic, payload)


@FUZZ
@given(st.text(max_size=120), st.binary(max_size=50))
def test_random_topics(topic: str, payload: bytes) -> None:
    verdict(topic, payload)
    verdict(topic, payload, SPEC)


@FUZZ
@given(st.sampled_from(TOPICS), json_value)
def test_random_json_on_every_channel(topic: str, doc: Any) -> None:
    try:
        payload = orjson.dumps(doc)
    except orjson.JSONEncodeError:  # a lone surrogate or a huge integer: send it raw
        payload = repr(doc).encode("utf-8", "surrogatepass")
    verdict(topic, payload)


@FUZZ
@given(
    st.integers(min_value=0, max_value=len(TOPICS) - 1),
    st.sampled_from(["door-sensor-1", "electric-strike", "siren", "motion", "data", "timestamp"]),
    json_value,
)
def test_one_field_of_a_good_payload_replaced(i: int, field: str, value: Any) -> None:
    try:
        doc = orjson.loads(GOOD[i])
    except orjson.JSONDecodeError:
        doc = {}
    if isinstance(doc, dict):
        doc[field] = value
    try:
        payload = orjson.dumps(doc)
    except orjson.JSONEncodeError:
        return
    verdict(TOPICS[i], payload)


@FUZZ
@given(st.binary(min_size=1, max_size=32), st.integers(min_value=0))
def test_bytes_spliced_into_good_payloads(junk: bytes, where: int) -> None:
    for topic, good in zip(TOPICS, GOOD, strict=True):
        at = where % len(good)
        verdict(topic, good[:at] + junk + good[at:])


@FUZZ
@given(st.text(alphabet="0123456789abcdefABCDEF xX", max_size=40))
def test_hex_frames(frame: str) -> None:
    verdict(TOPICS[-1], orjson.dumps({"data": frame}))


def test_the_corpus_of_nasties_on_every_channel() -> None:
    for _, raw in hostile_readings():
        for topic in TOPICS:
            verdict(topic, raw)
        verdict("devices/device-001/telemetry", raw, SPEC)
