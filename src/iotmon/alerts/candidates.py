"""The alert candidate message (processing -> ``alerts`` -> the alert engine) and its decoder.

Candidates come from our own processing role, but the topic is open to anyone who can
produce to the bus, so they are decoded like any outside input: the shape is checked by
msgspec, numbers are finite and bounded, text is storable, and whatever the bytes, the
answer is a candidate or a ``Rejection`` with a reason (tests/unit/alerts/test_candidates.py
fuzzes it). What the engine gets is a plain dict with only the fields it reads.
"""

from __future__ import annotations

import math
import time
from datetime import datetime
from typing import Annotated, Any, Literal

import msgspec

from iotmon.alerts.models import CandidateType
from iotmon.bus.pipeline import Reasons, Rejection
from iotmon.readings.models import ABS_MAX_VALUE, DEVICE_ID, MAX_PAYLOAD_BYTES, unstorable

Finite = Annotated[float, msgspec.Meta(ge=-ABS_MAX_VALUE, le=ABS_MAX_VALUE)]
Text = Annotated[str, msgspec.Meta(max_length=100)]


class Reason:
    INVALID_CANDIDATE = "invalid_candidate"
    PAYLOAD_TOO_LARGE = "payload_too_large"


class AlertCandidate(msgspec.Struct, forbid_unknown_fields=False):
    deviceId: Annotated[str, msgspec.Meta(pattern=DEVICE_ID.pattern)]
    type: CandidateType
    state: Literal["active", "clear"] = "active"
    timestamp: Annotated[str, msgspec.Meta(max_length=40)] | None = None
    value: Finite | None = None
    threshold: Finite | None = None
    zscore: Finite | None = None
    unit: Annotated[str, msgspec.Meta(max_length=20)] = ""
    sensorType: Text | None = None


_decoder = msgspec.json.Decoder(AlertCandidate)
_FIELDS = AlertCandidate.__struct_fields__


MAX_SKEW_S = 366 * 86400.0


def _check_time(text: str) -> None:
    try:
        at = datetime.fromisoformat(text)
        t = at.timestamp()
    except (ValueError, OverflowError, OSError) as exc:
        raise Rejection(Reason.INVALID_CANDIDATE, f"'timestamp' {text!r}: {exc}") from None
    if at.tzinfo is None:
        raise Rejection(Reason.INVALID_CANDIDATE, f"'timestamp' {text!r} has no time zone")
    if abs(t - time.time()) > MAX_SKEW_S:
        raise Rejection(Reason.INVALID_CANDIDATE, f"'timestamp' {text!r} is out of range")


def decode(raw: bytes) -> dict[str, Any]:
    """One candidate as the engine's dict, or raise ``Rejection`` (and nothing else)."""
    if len(raw) > MAX_PAYLOAD_BYTES:
        raise Rejection(Reason.PAYLOAD_TOO_LARGE, f"{len(raw)} bytes")
    try:
        c = _decoder.decode(raw)
    except msgspec.MsgspecError as exc:
        raise Rejection(Reason.INVALID_CANDIDATE, str(exc)[:300]) from None
    except (RecursionError, UnicodeError) as exc:
        raise Rejection(Reason.INVALID_CANDIDATE, f"{type(exc).__name__}: {exc}"[:300]) from None
    except Exception as exc:
        raise Rejection(Reasons.DECODER_ERROR, f"{type(exc).__name__}: {exc}"[:300]) from None
    for name in ("timestamp", "unit", "sensorType"):
        text = getattr(c, name)
        if text is not None and (why := unstorable(text)) is not None:
            raise Rejection(Reason.INVALID_CANDIDATE, f"'{name}' contains {why}")
    if c.timestamp is not None:
        _check_time(c.timestamp)
    for name in ("value", "threshold", "zscore"):
        number = getattr(c, name)
        if number is not None and not math.isfinite(number):
            raise Rejection(Reason.INVALID_CANDIDATE, f"'{name}' is not finite")
    return {f: v for f in _FIELDS if (v := getattr(c, f)) is not None}


def decode_many(raws: list[bytes]) -> tuple[list[dict[str, Any]], list[tuple[int, Rejection]]]:
    out: list[dict[str, Any]] = []
    rejects: list[tuple[int, Rejection]] = []
    for i, raw in enumerate(raws):
        try:
            out.append(decode(raw))
        except Rejection as rej:
            rejects.append((i, rej))
    return out, rejects
