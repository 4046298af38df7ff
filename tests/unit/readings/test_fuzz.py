"""Whatever bytes arrive on ``sensors-data``, the decoder answers a row or a rejection with a
reason: never another exception, never a row PostgreSQL or the statistics cannot take.

Random bytes, random JSON, and mutations of a valid reading (hypothesis), plus the corpus of
known nasties in tests/corpus.py."""

from __future__ import annotations

import math
from datetime import UTC, datetime
from typing import Any

import orjson
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from iotmon.bus.pipeline import decode_batch
from iotmon.devices.models import VALUE_RANGE
from iotmon.readings import models
from iotmon.readings.models import COPY_COLUMNS, Col, Reason, Rejection, Row, parse, parse_many
from iotmon.stats.processor import DeviceConfig, Processor
from tests.corpus import hostile_readings, odd_readings, reading


def now() -> datetime:
    """The clock at the check, not at import: the corpus and the generated readings carry the
    time they were made, and a long test session runs past the future-skew limit."""
    return datetime.now(UTC)


FUZZ = settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def verdict(raw: bytes) -> Row | Rejection:
    """The decoder's answer, asserting it is one of the two allowed kinds."""
    try:
        row = parse(raw, now())
    except Rejection as rej:
        rejection = rej
    else:
        rejection = None
    if rejection is not None:
        assert rejection.reason in Reason.ALL, rejection
        assert rejection.detail
        return rejection
    assert isinstance(row, tuple)
    assert len(row) == len(COPY_COLUMNS)
    storable(row)
    return row


def storable(row: Row) -> None:
    """What PostgreSQL's text and jsonb, and the windows' sums of squares, can take."""
    device_id, ts, sensor_type, value, unit, location, status, metadata = row
    lo, hi = VALUE_RANGE[sensor_type]
    assert math.isfinite(value)
    assert lo <= value <= hi
    for text in (device_id, unit, location, status):
        if text is not None:
            assert "\x00" not in text
            text.encode()  # no lone surrogate
    if metadata is not None:
        assert b"\\u0000" not in orjson.dumps(metadata.obj)
    assert ts.tzinfo is UTC


def comparable(row: Row) -> tuple[Any, ...]:
    metadata = row[Col.METADATA]
    return (*row[:7], None if metadata is None else metadata.obj)


def same_verdicts(raws: list[bytes]) -> None:
    """parse_many (with its fast path) agrees with parse, record by record."""
    rows, rejects = parse_many(raws, now())
    one_by_one = [verdict(r) for r in raws]
    assert [comparable(r) for r in one_by_one if isinstance(r, tuple)] == list(
        map(comparable, rows)
    )
    assert [(i, r.reason) for i, r in enumerate(one_by_one) if isinstance(r, Rejection)] == [
        (i, r.reason) for i, r in rejects
    ]


@pytest.mark.parametrize(("name", "raw"), hostile_readings(), ids=lambda x: str(x)[:40])
def test_every_hostile_reading_is_rejected_with_a_reason(name: str, raw: bytes) -> None:
    assert isinstance(verdict(raw), Rejection), name


@pytest.mark.parametrize(("name", "raw"), odd_readings(), ids=lambda x: str(x)[:40])
def test_odd_readings_are_stored_or_rejected(name: str, raw: bytes) -> None:
    verdict(raw)


def test_the_corpus_in_one_batch_rejects_all_and_keeps_the_good_neighbours() -> None:
    hostile = [raw for _, raw in hostile_readings()]
    good = [orjson.dumps(reading(value=float(i))) for i in range(len(hostile))]
    batch = [x for pair in zip(good, hostile, strict=True) for x in pair]
    rows, rejects = parse_many(batch, now())
    assert [r[Col.VALUE] for r in rows] == [float(i) for i in range(len(good))]
    assert [i for i, _ in rejects] == list(range(1, len(batch), 2))
    same_verdicts(batch)


@FUZZ
@given(st.binary(max_size=2048))
def test_random_bytes(raw: bytes) -> None:
    same_verdicts([raw])


json_leaf = (
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**70), max_value=2**70)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=30)
)
json_value = st.recursive(
    json_leaf,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner),
    max_leaves=20,
)


@FUZZ
@given(json_value)
def test_random_json(value: Any) -> None:
    try:
        raw = orjson.dumps(value, option=orjson.OPT_NON_STR_KEYS)
    except orjson.JSONEncodeError:  # surrogates, big integers: nothing to send
        return
    same_verdicts([raw])


FIELDS = ("deviceId", "timestamp", "sensorType", "value", "unit", "location", "status", "metadata")
wild_number = st.one_of(
    st.floats(allow_nan=False, allow_infinity=False),
    st.sampled_from([1e308, -1e308, 5e-324, -0.0, 1e12, 1e12 + 1, 1e16, 2**63, -(2**63) - 1]),
    st.integers(min_value=-(10**30), max_value=10**30),
)
wild_text = st.text(
    alphabet=st.characters(codec=None, exclude_categories=()), max_size=120
) | st.sampled_from(["\x00", "a\x00b", "\ud800", "x\udfffy", "", " " * 101, "é" * 60])


@FUZZ
@given(
    field=st.sampled_from(FIELDS),
    replacement=st.one_of(wild_number, wild_text, json_value),
    sensor=st.sampled_from(sorted(VALUE_RANGE)),
)
def test_one_field_of_a_good_reading_replaced(field: str, replacement: Any, sensor: str) -> None:
    msg = reading(sensorType=sensor, value=VALUE_RANGE[sensor][0] + 1)
    msg[field] = replacement
    try:
        raw = orjson.dumps(msg, option=orjson.OPT_NON_STR_KEYS)
    except (orjson.JSONEncodeError, TypeError):
        # orjson refuses lone surrogates and huge integers: send them the way a C device
        # would, as raw escapes and digits.
        raw = orjson.dumps({**msg, field: "__X__"}).replace(
            b'"__X__"',
            repr(replacement).encode("utf-8", "backslashreplace")
            if isinstance(replacement, int)
            else b'"' + str(replacement).encode("unicode_escape").replace(b'"', b'\\"') + b'"',
        )
    same_verdicts([raw])


@FUZZ
@given(st.binary(min_size=1, max_size=64), st.integers(min_value=0))
def test_bytes_spliced_into_a_good_reading(junk: bytes, where: int) -> None:
    raw = orjson.dumps(reading(metadata={"fw": "1.0"}))
    at = where % len(raw)
    same_verdicts([raw[:at] + junk + raw[at:], raw[:at] + raw[at + len(junk) :]])


@FUZZ
@given(st.lists(st.binary(max_size=200) | st.just(orjson.dumps(reading())), max_size=20))
def test_batches_through_the_pipeline_decoder(raws: list[bytes]) -> None:
    rows, rejects = decode_batch(lambda b: parse_many(b, now()), raws)
    assert len(rows) + len(rejects) == len(raws)


@FUZZ
@given(
    st.sampled_from(sorted(VALUE_RANGE)),
    st.lists(st.floats(allow_nan=False, allow_infinity=False), min_size=1, max_size=30),
)
def test_every_accepted_value_keeps_the_statistics_finite(sensor: str, values: list[float]) -> None:
    """Whatever values the decoder lets through, the windows' sums stay finite."""
    proc = Processor({"d": DeviceConfig("d", sensor, "u", 0, 1, -1, 2)})
    t = now().timestamp()
    for i, v in enumerate(values):
        row = verdict(orjson.dumps(reading(device_id="d", sensorType=sensor, value=v)))
        if isinstance(row, Rejection):
            assert row.reason == Reason.VALUE_OUT_OF_RANGE
            continue
        proc.add("d", t + i, row[Col.VALUE], t + i, sensor, "u")
    if "d" in proc.devices:
        s = proc.snapshot("d", t + len(values))["stats1h"]
        for x in (s.avg, s.min, s.max, s.std):
            assert x is None or math.isfinite(x)


device_id_text = st.text(
    alphabet=st.characters(codec="utf-8", exclude_characters='"\\'), max_size=60
) | st.sampled_from(["device-001", "d", "-d", "a" * 50, "a" * 51, "a b", "é", "d:1.x_y-z", "d\n"])


@FUZZ
@given(st.lists(device_id_text, min_size=1, max_size=12))
def test_device_ids_get_the_verdict_of_parse_seen_or_not(ids: list[str]) -> None:
    """parse_many checks a device id against the ids it has already seen pass, not with
    msgspec's pattern: the same verdicts, the first time an id comes and every time after."""
    raws = [orjson.dumps(reading(device_id=d)) for d in ids]
    same_verdicts(raws + raws)


def test_the_cache_of_valid_device_ids_stays_bounded(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(models, "VALID_IDS_MAX", 10)
    monkeypatch.setattr(models, "_valid_ids", set())
    raws = [orjson.dumps(reading(device_id=f"dev-{i}")) for i in range(35)]
    rows, rejects = parse_many(raws, now())
    assert [r[Col.DEVICE_ID] for r in rows] == [f"dev-{i}" for i in range(35)]
    assert not rejects
    assert 0 < len(models._valid_ids) <= 10
