"""Hostile and odd inputs kept as a corpus: the kinds an attacker or a broken device sends.

``HOSTILE_READINGS`` must each be rejected (a DLQ entry with a reason), never crash a role and
never be stored. ``ODD_READINGS`` are valid JSON with surprises; each is either stored exactly
as its (last-wins) reading or rejected, never anything else. Property-based tests add random
bytes and shapes on top (tests/unit/readings/test_fuzz.py); this list keeps the known nasties.
"""

from __future__ import annotations

from datetime import UTC, datetime

import orjson

from iotmon.readings.models import MAX_PAYLOAD_BYTES


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def reading(device_id: str = "device-001", ts: str | None = None, **changes: object) -> dict:
    msg: dict[str, object] = {
        "deviceId": device_id,
        "timestamp": ts or _now(),
        "sensorType": "temperature",
        "value": 50.0,
        "unit": "celsius",
        "location": "assembly-line-1",
        "status": "active",
    }
    msg.update(changes)
    return msg


def _splice(field: str, raw_value: bytes) -> bytes:
    """A reading with ``field`` set to ``raw_value`` bytes exactly as given (not re-encoded)."""
    body = orjson.dumps(reading(**{field: "__X__"}))
    return body.replace(b'"__X__"', raw_value)


def _deep(levels: int) -> bytes:
    return _splice("metadata", b'{"a":' * levels + b"1" + b"}" * levels)


def _padded(total: int) -> bytes:
    body = orjson.dumps(reading(metadata={"pad": ""}))
    return body.replace(b'"pad":""', b'"pad":"' + b"x" * (total - len(body)) + b'"')


def hostile_readings() -> list[tuple[str, bytes]]:
    """Fresh timestamps each call (the corpus must not go stale in the retention check)."""
    return [
        ("deep nesting 5,000", _deep(5_000)),
        ("deep nesting 20,000 (past 64 KiB)", _deep(20_000)),
        ("deep array nesting", _splice("metadata", b'{"a":' + b"[" * 5000 + b"]" * 5000 + b"}")),
        ("nesting past the metadata depth", _deep(50)),
        ("invalid UTF-8 in location", _splice("location", b'"\xff\xfe"')),
        ("invalid UTF-8 in unit", _splice("unit", b'"\xc3\x28"')),
        ("overlong UTF-8", _splice("location", b'"\xc0\xaf"')),
        ("UTF-8 encoded surrogate", _splice("location", b'"\xed\xa0\x80"')),
        ("lone high surrogate escape", _splice("location", b'"\\ud800"')),
        ("lone low surrogate escape", _splice("unit", b'"\\udfff"')),
        ("surrogate in metadata key", _splice("metadata", b'{"\\ud800":1}')),
        ("surrogate in metadata value", _splice("metadata", b'{"k":"\\udc00x"}')),
        ("NUL escape in location", _splice("location", b'"line\\u0000one"')),
        ("NUL escape in metadata", _splice("metadata", b'{"k":"\\u0000"}')),
        ("NUL escape in status", _splice("status", b'"\\u0000"')),
        ("raw NUL byte in a string", _splice("location", b'"a\x00b"')),
        ("raw control byte in a string", _splice("location", b'"a\x01b"')),
        ("value 1e308", orjson.dumps(reading(value=1e308))),
        ("value -1e308", orjson.dumps(reading(value=-1e308))),
        ("value 1e300 pressure", orjson.dumps(reading(sensorType="pressure", value=1e300))),
        ("value 1e400 (past double)", _splice("value", b"1e400")),
        ("value -1e400", _splice("value", b"-1e400")),
        ("huge exponent", _splice("value", b"1e999999999999")),
        ("value NaN", _splice("value", b"NaN")),
        ("value Infinity", _splice("value", b"Infinity")),
        ("value -Infinity", _splice("value", b"-Infinity")),
        ("value as string", _splice("value", b'"75.2"')),
        ("value true", _splice("value", b"true")),
        ("value null", _splice("value", b"null")),
        ("quality above 100 %", orjson.dumps(reading(sensorType="quality", value=1e6))),
        ("production negative", orjson.dumps(reading(sensorType="production", value=-5.0))),
        ("integer past 64 bits in metadata", _splice("metadata", b'{"n":' + b"9" * 40 + b"}")),
        ("integer past 64 bits as value", _splice("value", b"9" * 400)),
        ("timestamp year 0001 with offset", _splice("timestamp", b'"0001-01-01T00:00:00+01:00"')),
        ("timestamp year 9999 with offset", _splice("timestamp", b'"9999-12-31T23:59:59-01:00"')),
        ("timestamp without zone", _splice("timestamp", b'"2026-11-23T12:00:00"')),
        ("timestamp garbage", _splice("timestamp", b'"yesterday"')),
        ("timestamp as number", _splice("timestamp", b"1700000000")),
        ("timestamp far future", orjson.dumps(reading(ts="2999-01-01T00:00:00Z"))),
        ("timestamp far past", orjson.dumps(reading(ts="1970-01-01T00:00:00Z"))),
        ("device id with NUL", _splice("deviceId", b'"dev\\u0000ice"')),
        ("device id too long", orjson.dumps(reading(device_id="d" * 51))),
        ("device id SQL", orjson.dumps(reading(device_id="x'; DROP TABLE devices;--"))),
        ("device id path", orjson.dumps(reading(device_id="../../etc/passwd"))),
        ("unknown sensor type", orjson.dumps(reading(sensorType="plasma"))),
        ("unit empty", orjson.dumps(reading(unit=""))),
        ("unit too long", orjson.dumps(reading(unit="u" * 21))),
        ("location too long", orjson.dumps(reading(location="l" * 101))),
        ("metadata not an object", orjson.dumps(reading(metadata=[1, 2, 3]))),
        ("missing value", orjson.dumps({k: v for k, v in reading().items() if k != "value"})),
        ("missing deviceId", orjson.dumps({k: v for k, v in reading().items() if k != "deviceId"})),
        ("empty record", b""),
        ("whitespace record", b"   \n\t "),
        ("null record", b"null"),
        ("array record", b"[1,2,3]"),
        ("string record", b'"a reading"'),
        ("number record", b"42"),
        ("truncated record", orjson.dumps(reading())[:-7]),
        ("two records in one", orjson.dumps(reading()) + orjson.dumps(reading())),
        ("trailing garbage", orjson.dumps(reading()) + b"}}}"),
        ("BOM prefix", b"\xef\xbb\xbf" + orjson.dumps(reading())),
        ("UTF-16 record", orjson.dumps(reading()).decode().encode("utf-16")),
        ("random binary", bytes(range(256)) * 4),
        ("over 64 KiB by one", _padded(MAX_PAYLOAD_BYTES + 1)),
        ("one MiB", _padded(1 << 20)),
    ]


def odd_readings() -> list[tuple[str, bytes]]:
    """Surprising but not wrong: stored as their reading says, or rejected with a reason."""
    return [
        ("exactly 64 KiB", _padded(MAX_PAYLOAD_BYTES)),
        ("duplicate keys (last wins)", orjson.dumps(reading())[:-1] + b',"value":51.5}'),
        ("unknown extra field", orjson.dumps(reading(firmware="1.2.3"))),
        ("metadata 7 levels", _deep(7)),
        ("tiny value", orjson.dumps(reading(value=5e-324))),
        ("negative zero", orjson.dumps(reading(value=-0.0))),
        ("integer value", _splice("value", b"42")),
        ("exponent value", _splice("value", b"4.2e1")),
        ("unicode location", orjson.dumps(reading(location="Halle 3 \u2013 Süd ✓ 工場"))),
        ("escaped unicode location", _splice("location", b'"\\u00e9t\\u00e9 \\ud83d\\ude00"')),
        ("offset timestamp", orjson.dumps(reading(ts="2026-11-23T13:00:00+02:00"))),
        ("null location", orjson.dumps(reading(location=None))),
        ("empty metadata", orjson.dumps(reading(metadata={}))),
    ]


HOSTILE_READINGS = hostile_readings()
ODD_READINGS = odd_readings()
