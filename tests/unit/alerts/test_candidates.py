"""Whatever bytes arrive on ``alerts``, the candidate decoder answers a candidate the engine
can take, or a rejection with a reason: never another exception."""

from __future__ import annotations

import math
from datetime import UTC, datetime
from typing import Any

import orjson
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from iotmon.alerts import rules
from iotmon.alerts.candidates import decode, decode_many
from iotmon.alerts.models import TYPES
from iotmon.bus.pipeline import Rejection
from tests.corpus import hostile_readings

FUZZ = settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def good(**changes: Any) -> dict[str, Any]:
    c: dict[str, Any] = {
        "deviceId": "device-001",
        "type": "threshold_exceeded",
        "value": 90.0,
        "threshold": 85.0,
        "timestamp": datetime.now(UTC).isoformat(),
        "state": "active",
        "unit": "celsius",
        "sensorType": "temperature",
    }
    c.update(changes)
    return c


def check(raw: bytes) -> dict[str, Any] | Rejection:
    try:
        c = decode(raw)
    except Rejection as rej:
        rejection = rej
    else:
        rejection = None
    if rejection is not None:
        assert rejection.reason
        assert rejection.detail
        return rejection
    # What the engine does with one: none of it may raise.
    assert c["type"] in TYPES
    rules.severity(c["type"], c.get("value"), c.get("threshold"), 10.0, c.get("zscore"))
    rules.message(
        c["type"], c["deviceId"], c.get("value"), c.get("threshold"), c.get("unit", ""), 30
    )
    if "timestamp" in c:
        assert math.isfinite(datetime.fromisoformat(c["timestamp"]).timestamp())
    return c


def test_a_good_candidate_passes() -> None:
    c = check(orjson.dumps(good(zscore=4.5, projected=99.0)))
    assert isinstance(c, dict)
    assert (c["value"], c["zscore"]) == (90.0, 4.5)
    assert "projected" not in c


@pytest.mark.parametrize(
    "raw",
    [
        orjson.dumps(good(value="ninety")),
        orjson.dumps(good(value=1e308)),
        orjson.dumps(good(threshold=[1])),
        orjson.dumps(good(type="meteor_strike")),
        orjson.dumps(good(deviceId=None)),
        orjson.dumps(good(deviceId="../x")),
        orjson.dumps(good(state="maybe")),
        orjson.dumps(good(timestamp="0001-01-01T00:00:00+01:00")),
        orjson.dumps(good(timestamp="9999-12-31T23:59:59-01:00")),
        orjson.dumps(good(timestamp="2026-11-23T12:00:00")),
        orjson.dumps(good(timestamp="not a time")),
        orjson.dumps(good(unit="a\x00b")),
        orjson.dumps(good(unit="u")).replace(b'"u"', b'"\\ud800"'),
        b"{}",
        b"null",
        b"",
        b"[" * 10000,
        b'{"deviceId":"device-001","type":"data_anomaly","zscore":1e999}',
        *(raw for _, raw in hostile_readings()),
    ],
    ids=lambda raw: raw[:40].decode("utf-8", "replace"),
)
def test_hostile_candidates_are_rejected(raw: bytes) -> None:
    assert isinstance(check(raw), Rejection)


@FUZZ
@given(st.binary(max_size=1024))
def test_random_bytes(raw: bytes) -> None:
    check(raw)


json_value = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**70), max_value=2**70)
    | st.floats()
    | st.text(max_size=30),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner),
    max_leaves=20,
)


@FUZZ
@given(
    field=st.sampled_from(
        ["deviceId", "type", "value", "threshold", "zscore", "timestamp", "state", "unit"]
    ),
    replacement=json_value,
)
def test_one_field_replaced(field: str, replacement: Any) -> None:
    try:
        raw = orjson.dumps(good(**{field: replacement}), option=orjson.OPT_NON_STR_KEYS)
    except orjson.JSONEncodeError:
        return
    check(raw)


@FUZZ
@given(st.lists(st.binary(max_size=100) | st.just(orjson.dumps(good())), max_size=20))
def test_batches(raws: list[bytes]) -> None:
    got, rejects = decode_many(raws)
    assert len(got) + len(rejects) == len(raws)
