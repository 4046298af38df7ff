"""The MQTT decoder on each encoding of the seeded profiles, and its rejections."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import orjson
import pytest

from iotmon.bus.pipeline import Rejection
from iotmon.mqtt.decoders import Reason, decode, device_of, topic_matches
from iotmon.profiles.models import Profile, ProfileBody
from iotmon.readings.models import parse

NOW = datetime(2026, 12, 10, 12, 0, 0, 123000, tzinfo=UTC)
DEV = "f2-e4fd45f654be"


def seeded(name: str) -> ProfileBody:
    """A profile exactly as migration 0006 seeds it."""
    from importlib import resources

    sql = (
        resources.files("iotmon.db") / "migrations" / "20261210_0006_device_profiles.sql"
    ).read_text()
    start = sql.index(f"('{name}',")
    body = sql[start:]
    channels = body[body.index("'[") + 1 : body.index("]'") + 1]
    return Profile.model_validate({"name": name, "channels": orjson.loads(channels)})


F2 = seeded("f2-smart-controller")


def ok(
    topic: str, payload: bytes | dict[str, Any] | str, profile: ProfileBody = F2
) -> list[dict[str, Any]]:
    raw = (
        payload
        if isinstance(payload, bytes)
        else (payload.encode() if isinstance(payload, str) else orjson.dumps(payload))
    )
    got = decode(topic, raw, NOW, profile)
    assert not isinstance(got, Rejection), got
    return got


def rejected(topic: str, payload: bytes, profile: ProfileBody = F2) -> Rejection:
    got = decode(topic, payload, NOW, profile)
    assert isinstance(got, Rejection), got
    assert got.reason in Reason.ALL
    return got


def test_boolean_map_gives_a_reading_per_door_with_the_device_timestamp() -> None:
    topic = f"cmnd/{DEV}/access-control-mode/J1/door-sensors"
    got = ok(
        topic, {"timestamp": "2026-12-10T11:59:58.5", "door-sensor-1": False, "door-sensor-2": True}
    )
    assert [(r["deviceId"], r["value"], r["sensorType"]) for r in got] == [
        (f"{DEV}:door-sensor-1", 0.0, "door"),
        (f"{DEV}:door-sensor-2", 1.0, "door"),
    ]
    assert got[0]["timestamp"] == "2026-12-10T11:59:58.500Z"  # naive = UTC
    assert got[0]["metadata"] == {"channel": "door-sensor-1", "topic": topic, "clock": "device"}
    # Only one of the two doors in a message: one reading.
    assert len(ok(topic, {"door-sensor-2": False})) == 1


def test_string_payload_is_one_read_with_the_code_in_metadata() -> None:
    got = ok(f"cmnd/{DEV}/access-control-mode/J2/qr-reader", "  ACME-4711-XYZ\n")
    assert len(got) == 1
    r = got[0]
    assert (r["value"], r["sensorType"], r["metadata"]["code"]) == (
        1.0,
        "access_read",
        "ACME-4711-XYZ",
    )
    assert r["timestamp"] == "2026-12-10T12:00:00.123Z"
    assert r["metadata"]["clock"] == "bridge"


def test_hex_registers_temperature_humidity_pressure_from_one_frame() -> None:
    # -2.5 C (0xFFE7 signed * 0.1), 45.6 % (0x01C8 * 0.1), 1013.25 hPa (0x00018BCD * 0.01)
    got = ok(
        f"cmnd/{DEV}/rs485-mode/J3/sensor-data",
        {"timestamp": 1796860800, "data": "0xFFE7 01C8 00018BCD"},
    )
    values = {r["metadata"]["channel"]: r["value"] for r in got}
    assert values == pytest.approx({"temperature": -2.5, "humidity": 45.6, "pressure": 1013.25})
    assert got[0]["timestamp"] == "2026-12-10T00:00:00.000Z"


def test_hex_register_values_are_stored_without_float_noise() -> None:
    # 474 * 0.1 is 47.400000000000006 in binary floating point; the reading says 47.4.
    got = ok(
        f"cmnd/{DEV}/rs485-mode/J3/sensor-data",
        {"timestamp": 1796860800, "data": "0x0000 01DA 00000000"},
    )
    values = {r["metadata"]["channel"]: r["value"] for r in got}
    assert values["humidity"] == 47.4


def test_json_number_of_a_specification_device_is_a_valid_reading() -> None:
    got = ok(
        "devices/device-001/telemetry",
        {"timestamp": "2026-12-10T11:59:59Z", "value": 42.5},
        seeded("spec-temperature"),
    )
    assert got[0]["deviceId"] == "device-001"  # one channel: the device itself
    row = parse(orjson.dumps(got[0]), NOW)  # the reading contract takes it as it is
    assert row[3] == 42.5


@pytest.mark.parametrize(
    ("topic", "payload", "reason"),
    [
        (f"cmnd/{DEV}/access-control-mode/J1/door-sensors", b"{not json", Reason.INVALID_JSON),
        (
            f"cmnd/{DEV}/access-control-mode/J1/door-sensors",
            b'{"door-sensor-1": "open"}',
            Reason.INVALID_VALUE,
        ),
        (f"cmnd/{DEV}/access-control-mode/J1/door-sensors", b'{"other": true}', Reason.NO_VALUE),
        (
            f"cmnd/{DEV}/access-control-mode/J1/door-sensors",
            b'{"door-sensor-1": true, "timestamp": "yesterday"}',
            Reason.INVALID_TIMESTAMP,
        ),
        (f"cmnd/{DEV}/elevator/J1/floor", b"3", Reason.NO_CHANNEL),
        (f"cmnd/{DEV}/rs485-mode/J3/sensor-data", b'{"data": "FFE7"}', Reason.INVALID_VALUE),
        (f"cmnd/{DEV}/rs485-mode/J3/sensor-data", b'{"data": "zz"}', Reason.INVALID_VALUE),
        (
            f"cmnd/{DEV}/rs485-mode/J3/sensor-data",
            b'{"data": "7FFF 03E9 00000000"}',
            Reason.VALUE_OUT_OF_RANGE,
        ),
        (f"cmnd/{DEV}/access-control-mode/J2/nfc-reader", b"\xff\xfe", Reason.INVALID_VALUE),
        (f"cmnd/{DEV}/access-control-mode/J2/nfc-reader", b"a\x00b", Reason.INVALID_TEXT),
        (f"cmnd/{DEV}/access-control-mode/J2/nfc-reader", b"   ", Reason.INVALID_VALUE),
        ("cmnd", b"1", Reason.INVALID_TOPIC),
        ("cmnd/bad device/x", b"1", Reason.INVALID_TOPIC),
        (f"cmnd/{DEV}/access-control-mode/J2/nfc-reader", b"x" * 70_000, Reason.PAYLOAD_TOO_LARGE),
    ],
)
def test_rejections_say_why(topic: str, payload: bytes, reason: str) -> None:
    rej = rejected(topic, payload)
    assert rej.reason == reason, rej
    assert rej.detail


def test_topic_root_and_patterns() -> None:
    assert device_of("t1/cmnd/dev-1/x", "t1/") == "dev-1"
    assert isinstance(device_of("other/cmnd/dev-1/x", "t1/"), Rejection)
    assert topic_matches("cmnd/{device}/#", ["cmnd", "d"], "d")
    assert topic_matches("cmnd/{device}/+/x", ["cmnd", "d", "J1", "x"], "d")
    assert not topic_matches("cmnd/{device}/+/x", ["cmnd", "e", "J1", "x"], "d")
    assert not topic_matches("cmnd/{device}/+/x", ["cmnd", "d", "J1", "x", "y"], "d")
    got = decode(
        f"t1/cmnd/{DEV}/alarm-mode/J4/siren",
        b'{"siren": true}',
        NOW,
        F2,
        root="t1/",
        location="gate-1",
    )
    assert isinstance(got, list)
    assert got[0]["location"] == "gate-1"
    assert got[0]["value"] == 1.0
