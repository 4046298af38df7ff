from __future__ import annotations

from datetime import UTC, datetime, timedelta

import orjson
import pytest

from iotmon.readings.models import MAX_PAYLOAD_BYTES, Reason, Rejection, parse

NOW = datetime(2026, 11, 23, 12, 0, 0, tzinfo=UTC)


def good(**changes: object) -> dict[str, object]:
    msg: dict[str, object] = {
        "deviceId": "device-001",
        "timestamp": "2026-11-23T11:59:59.500Z",
        "sensorType": "temperature",
        "value": 75.2,
        "unit": "celsius",
        "location": "assembly-line-1",
        "status": "active",
    }
    msg.update(changes)
    return {k: v for k, v in msg.items() if v is not ...}


def test_a_good_reading_becomes_a_row() -> None:
    row = parse(orjson.dumps(good()), NOW)
    assert row[:7] == (
        "device-001",
        datetime(2026, 11, 23, 11, 59, 59, 500000, tzinfo=UTC),
        "temperature",
        75.2,
        "celsius",
        "assembly-line-1",
        "active",
    )
    assert row[7] is None


def test_offsets_are_normalised_to_utc_and_optional_fields_default() -> None:
    row = parse(
        orjson.dumps(
            good(
                timestamp="2026-11-23T13:00:00+02:00",
                location=...,
                status=...,
                value=3,
                metadata={"fw": "1.2"},
            )
        ),
        NOW,
    )
    assert row[1] == datetime(2026, 11, 23, 11, 0, tzinfo=UTC)
    assert row[3] == 3.0
    assert row[5] is None
    assert row[6] == "active"
    assert row[7] is not None
    assert row[7].obj == {"fw": "1.2"}


BAD = [
    (b"{not json", Reason.INVALID_JSON),
    (b"[1, 2, 3]", Reason.NOT_AN_OBJECT),
    (b'"a string"', Reason.NOT_AN_OBJECT),
    (orjson.dumps(good(deviceId=...)), Reason.MISSING_FIELD),
    (orjson.dumps(good(value=...)), Reason.MISSING_FIELD),
    (orjson.dumps(good(timestamp=...)), Reason.MISSING_FIELD),
    (orjson.dumps(good(sensorType=...)), Reason.MISSING_FIELD),
    (orjson.dumps(good(unit=...)), Reason.MISSING_FIELD),
    (orjson.dumps(good(value="75.2")), Reason.INVALID_FIELD),
    (orjson.dumps(good(value=True)), Reason.INVALID_FIELD),
    (orjson.dumps(good(deviceId=42)), Reason.INVALID_FIELD),
    (orjson.dumps(good(deviceId="x" * 51)), Reason.INVALID_FIELD),
    (orjson.dumps(good(deviceId="bad id; drop table")), Reason.INVALID_FIELD),
    (orjson.dumps(good(timestamp="yesterday")), Reason.INVALID_FIELD),
    (orjson.dumps(good(timestamp="2026-11-23T11:00:00")), Reason.INVALID_FIELD),
    (orjson.dumps(good(timestamp=1700000000)), Reason.INVALID_FIELD),
    (orjson.dumps(good(unit="")), Reason.INVALID_FIELD),
    (orjson.dumps(good(metadata=[1])), Reason.INVALID_FIELD),
    (
        b'{"deviceId":"device-001","timestamp":"2026-11-23T11:59:59Z","sensorType":"temperature",'
        b'"value":NaN,"unit":"celsius"}',
        Reason.NON_FINITE_VALUE,
    ),
    (
        b'{"deviceId":"device-001","timestamp":"2026-11-23T11:59:59Z","sensorType":"temperature",'
        b'"value":Infinity,"unit":"celsius"}',
        Reason.NON_FINITE_VALUE,
    ),
    (
        b'{"deviceId":"device-001","timestamp":"2026-11-23T11:59:59Z","sensorType":"temperature",'
        b'"value":-1e999,"unit":"celsius"}',
        Reason.NON_FINITE_VALUE,
    ),
    (orjson.dumps(good(sensorType="plasma")), Reason.UNKNOWN_SENSOR_TYPE),
    (orjson.dumps(good(timestamp="2026-11-23T12:05:01Z")), Reason.TIMESTAMP_IN_FUTURE),
    (orjson.dumps(good(timestamp="2026-01-01T00:00:00Z")), Reason.TIMESTAMP_TOO_OLD),
    (orjson.dumps(good(metadata={"blob": "x" * MAX_PAYLOAD_BYTES})), Reason.PAYLOAD_TOO_LARGE),
    (orjson.dumps(good(value=1e308)), Reason.VALUE_OUT_OF_RANGE),
    (orjson.dumps(good(sensorType="quality", value=100.5)), Reason.VALUE_OUT_OF_RANGE),
    (orjson.dumps(good(location="line\x001")), Reason.INVALID_TEXT),
    (orjson.dumps(good(metadata={"k": "\x00"})), Reason.INVALID_TEXT),
    (orjson.dumps(good(unit="u")).replace(b'"u"', b'"\\udc00"'), Reason.INVALID_JSON),
]


@pytest.mark.parametrize(("raw", "reason"), BAD)
def test_bad_input_is_rejected_with_its_reason(raw: bytes, reason: str) -> None:
    with pytest.raises(Rejection) as info:
        parse(raw, NOW)
    assert info.value.reason == reason
    assert info.value.detail  # a person can read why


def test_every_reason_is_exercised() -> None:
    assert {r for _, r in BAD} == set(Reason.ALL)


def test_just_inside_the_future_limit_is_accepted() -> None:
    ts = (NOW + timedelta(minutes=4, seconds=59)).isoformat()
    assert parse(orjson.dumps(good(timestamp=ts)), NOW)[1] > NOW
