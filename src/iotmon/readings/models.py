"""The reading message (DESIGN.md 4.2) and its validation.

``parse`` is the hot path of ingestion: bytes in, a row for COPY out, or a ``Rejection`` with a
reason code a person can act on. The shape is checked by msgspec in C; the
rules that need the clock (future, retention) are checked after.

Whatever the bytes, the answer is a row or a ``Rejection``: no other exception leaves
``parse`` or ``parse_many`` (tests/unit/readings/test_fuzz.py holds them to that). A row is
also one PostgreSQL will take: no NUL or lone surrogate in any text, metadata shallow and
serialisable, the value within its sensor type's physical range (so no sum of squares in SQL
or in the windows can overflow).
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Annotated, Any, Final

import msgspec
import orjson
from psycopg.types.json import Jsonb

from iotmon.bus.pipeline import Reasons
from iotmon.bus.pipeline import Rejection as Rejection  # readings' rejections are the pipeline's
from iotmon.devices.models import VALUE_RANGE

MAX_PAYLOAD_BYTES = 64 * 1024
ABS_MAX_VALUE = 1e12  # past every sensor type's range: a bound for anything numeric stored
DEVICE_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._:-]{0,49}$")  # everywhere a device id is taken
_NON_FINITE = re.compile(rb"\b(NaN|-?Infinity)\b")
MAX_METADATA_DEPTH = 8
_BACKSLASH = 0x5C  # an int: `in` on bytes is then one memchr (a two-byte needle cost 0.5 us)


# One reading as stored: the columns of ``sensor_readings`` in COPY order, as a plain tuple
# (what COPY takes). Not a NamedTuple: the collector untracks plain tuples of atoms at their
# first pass but keeps tuple subclasses tracked, and parse_many ran ~25 % slower with one.
Row = tuple[str, datetime, str, float, str, str | None, str, Jsonb | None]


class Col:
    """The position of each field in a ``Row``, named once (``row[Col.VALUE]``)."""

    DEVICE_ID: Final = 0
    TIMESTAMP: Final = 1
    SENSOR_TYPE: Final = 2
    VALUE: Final = 3
    UNIT: Final = 4
    LOCATION: Final = 5
    STATUS: Final = 6
    METADATA: Final = 7


COPY_COLUMNS = (
    "device_id",
    "timestamp",
    "sensor_type",
    "value",
    "unit",
    "location",
    "status",
    "metadata",
)
COPY_TYPES = ("text", "timestamptz", "text", "float8", "text", "text", "text", "jsonb")


class Reason:
    """Rejection reason codes (the ``x-iotmon-reason`` header of a DLQ message)."""

    PAYLOAD_TOO_LARGE = "payload_too_large"
    INVALID_JSON = "invalid_json"
    NOT_AN_OBJECT = "not_an_object"
    MISSING_FIELD = "missing_field"
    INVALID_FIELD = "invalid_field"
    NON_FINITE_VALUE = "non_finite_value"
    UNKNOWN_SENSOR_TYPE = "unknown_sensor_type"
    TIMESTAMP_IN_FUTURE = "timestamp_in_future"
    TIMESTAMP_TOO_OLD = "timestamp_too_old"
    VALUE_OUT_OF_RANGE = "value_out_of_range"
    INVALID_TEXT = "invalid_text"  # NUL or a lone surrogate: PostgreSQL cannot store it

    ALL = (
        PAYLOAD_TOO_LARGE,
        INVALID_JSON,
        NOT_AN_OBJECT,
        MISSING_FIELD,
        INVALID_FIELD,
        NON_FINITE_VALUE,
        UNKNOWN_SENSOR_TYPE,
        TIMESTAMP_IN_FUTURE,
        TIMESTAMP_TOO_OLD,
        VALUE_OUT_OF_RANGE,
        INVALID_TEXT,
    )
    # Besides these, the pipeline's own: ``decoder_error`` (a surprise the decoder raised,
    # which the fuzz tests say does not happen) and ``write_rejected`` (PostgreSQL refused it).


@dataclass(frozen=True, slots=True)
class Limits:
    """What a reading may be besides its shape: one object, built from the settings by
    ``limits_from``, so ingestion and processing judge the same bytes the same way."""

    max_future: timedelta = timedelta(minutes=5)
    max_age: timedelta = timedelta(days=90)
    value_range: Mapping[str, tuple[float, float]] = field(
        default_factory=lambda: dict(VALUE_RANGE)
    )


DEFAULT_LIMITS = Limits()


def limits_from(settings: Any) -> Limits:
    """The reading limits of a deployment (``IOTMON_MAX_FUTURE_SKEW_S``,
    ``IOTMON_RETENTION_READINGS_DAYS``)."""
    return Limits(
        max_future=timedelta(seconds=settings.max_future_skew_s),
        max_age=timedelta(days=settings.retention_readings_days),
    )


class ReadingMessage(msgspec.Struct, gc=False):
    """The wire shape, checked in C by msgspec (several times faster than hand-written checks,
    which matters at 100,000 readings/s)."""

    deviceId: Annotated[str, msgspec.Meta(pattern=DEVICE_ID.pattern)]
    timestamp: Annotated[datetime, msgspec.Meta(tz=True)]
    # Any name here; whether it is a known sensor type is the limits' call (value_range).
    sensorType: Annotated[str, msgspec.Meta(min_length=1, max_length=40)]
    value: float
    unit: Annotated[str, msgspec.Meta(min_length=1, max_length=20)]
    location: Annotated[str, msgspec.Meta(min_length=1, max_length=100)] | None = None
    status: Annotated[str, msgspec.Meta(min_length=1, max_length=20)] = "active"
    metadata: dict[str, Any] | None = None


_decoder = msgspec.json.Decoder(ReadingMessage)


class _Unchecked(msgspec.Struct, gc=False):
    """``ReadingMessage`` but for the device id's pattern, which ``parse_many`` checks itself
    against the ids it has already seen pass: msgspec calls ``re`` for every message (0.7-1.7
    us on the benchmark's box, more than the rest of the decode), and a fleet sends the same
    few thousand ids again and again."""

    deviceId: str
    timestamp: Annotated[datetime, msgspec.Meta(tz=True)]
    sensorType: Annotated[str, msgspec.Meta(min_length=1, max_length=40)]
    value: float
    unit: Annotated[str, msgspec.Meta(min_length=1, max_length=20)]
    location: Annotated[str, msgspec.Meta(min_length=1, max_length=100)] | None = None
    status: Annotated[str, msgspec.Meta(min_length=1, max_length=20)] = "active"
    metadata: dict[str, Any] | None = None


_unchecked = msgspec.json.Decoder(_Unchecked)
# Device ids that matched DEVICE_ID, as msgspec matches a pattern (``search``); cleared when
# it grows past VALID_IDS_MAX, so made-up ids cannot grow it without bound.
_valid_ids: set[str] = set()
VALID_IDS_MAX = 100_000


def _valid_id(device_id: str) -> bool:
    if DEVICE_ID.search(device_id) is None:
        return False
    if len(_valid_ids) >= VALID_IDS_MAX:
        _valid_ids.clear()
    _valid_ids.add(device_id)
    return True


_MISSING = re.compile(r"missing required field `(\w+)`")


def _classify(exc: msgspec.ValidationError, raw: bytes) -> Rejection:
    text = str(exc)
    m = _MISSING.search(text)
    if m:
        return Rejection(Reason.MISSING_FIELD, f"'{m.group(1)}' is required")
    if text.startswith("Expected `object`"):
        return Rejection(Reason.NOT_AN_OBJECT, text)
    if "Number out of range" in text:
        return Rejection(Reason.NON_FINITE_VALUE, f"NaN and Infinity are not readings ({text})")
    return Rejection(Reason.INVALID_FIELD, text)


def parse(raw: bytes, now: datetime, limits: Limits = DEFAULT_LIMITS) -> Row:
    """Validate one message; return its row or raise ``Rejection`` (and nothing else)."""
    try:
        return _parse(raw, now, limits)
    except Rejection:
        raise
    except RecursionError:
        raise Rejection(Reason.INVALID_JSON, "nested too deeply") from None
    except UnicodeError as exc:
        raise Rejection(Reason.INVALID_JSON, f"not valid UTF-8: {exc}"[:300]) from None
    except Exception as exc:  # a decoder surprise is this record's problem, not the batch's
        raise Rejection(Reasons.DECODER_ERROR, f"{type(exc).__name__}: {exc}"[:300]) from None


def unstorable(text: str) -> str | None:
    """Why PostgreSQL's text (and jsonb) cannot hold ``text``, or None when it can: a NUL
    character, or a lone surrogate (not encodable as UTF-8). Every decoder of outside input
    asks here (readings, alert candidates, MQTT payloads)."""
    if "\x00" in text:
        return "a NUL character"
    if not text.isascii():
        try:
            text.encode()
        except UnicodeEncodeError:
            return "a lone surrogate"
    return None


def _check_text(name: str, text: str | None) -> None:
    why = None if text is None else unstorable(text)
    if why is not None:
        raise Rejection(Reason.INVALID_TEXT, f"'{name}' contains {why}")


def _depth(obj: Any, limit: int) -> int:
    if limit < 0:
        return 0
    if isinstance(obj, dict):
        return 1 + max((_depth(v, limit - 1) for v in obj.values()), default=0)
    if isinstance(obj, list):
        return 1 + max((_depth(v, limit - 1) for v in obj), default=0)
    return 0


def _check_metadata(metadata: dict[str, Any]) -> Jsonb:
    if _depth(metadata, MAX_METADATA_DEPTH) > MAX_METADATA_DEPTH:
        raise Rejection(
            Reason.INVALID_FIELD, f"'metadata' nests deeper than {MAX_METADATA_DEPTH} levels"
        )
    try:
        encoded = orjson.dumps(metadata)
    except orjson.JSONEncodeError as exc:  # lone surrogates, integers past 64 bits
        raise Rejection(Reason.INVALID_TEXT, f"'metadata' cannot be stored: {exc}") from None
    if b"\\u0000" in encoded:
        raise Rejection(Reason.INVALID_TEXT, "'metadata' contains a NUL character")
    return Jsonb(metadata)


def _parse(raw: bytes, now: datetime, limits: Limits) -> Row:
    if len(raw) > MAX_PAYLOAD_BYTES:
        raise Rejection(
            Reason.PAYLOAD_TOO_LARGE, f"{len(raw)} bytes is over the {MAX_PAYLOAD_BYTES}-byte limit"
        )
    try:
        msg = _decoder.decode(raw)
    except msgspec.ValidationError as exc:
        raise _classify(exc, raw) from None
    except msgspec.DecodeError as exc:
        if _NON_FINITE.search(raw):
            raise Rejection(Reason.NON_FINITE_VALUE, "NaN and Infinity are not readings") from None
        raise Rejection(Reason.INVALID_JSON, str(exc)) from None
    ts = msg.timestamp
    if ts.tzinfo is not UTC:
        try:
            ts = ts.astimezone(UTC)
        except OverflowError:
            raise Rejection(
                Reason.INVALID_FIELD, f"timestamp {msg.timestamp.isoformat()} is out of range"
            ) from None
    if ts - now > limits.max_future:
        raise Rejection(
            Reason.TIMESTAMP_IN_FUTURE,
            f"{ts:%Y-%m-%dT%H:%M:%S}Z is more than {limits.max_future} ahead of {now:%H:%M:%S}Z",
        )
    if now - ts > limits.max_age:
        raise Rejection(
            Reason.TIMESTAMP_TOO_OLD,
            f"{ts:%Y-%m-%dT%H:%M:%S}Z is older than the {limits.max_age.days}-day retention",
        )
    value = msg.value
    if not math.isfinite(value):
        raise Rejection(Reason.NON_FINITE_VALUE, "NaN and Infinity are not readings")
    bounds = limits.value_range.get(msg.sensorType)
    if bounds is None:
        _check_text("sensorType", msg.sensorType)
        known = ", ".join(sorted(limits.value_range))
        raise Rejection(
            Reason.UNKNOWN_SENSOR_TYPE,
            f"{msg.sensorType[:40]!r} is not a sensor type: use one of {known}",
        )
    lo, hi = bounds
    if not lo <= value <= hi:
        raise Rejection(
            Reason.VALUE_OUT_OF_RANGE,
            f"{value!r} is outside the physical range of {msg.sensorType} [{lo:g}, {hi:g}]",
        )
    _check_text("unit", msg.unit)
    _check_text("location", msg.location)
    _check_text("status", msg.status)
    return (
        msg.deviceId,
        ts,
        msg.sensorType,
        value,
        msg.unit,
        msg.location,
        msg.status,
        _check_metadata(msg.metadata) if msg.metadata else None,
    )


def parse_many(
    raws: list[bytes], now: datetime, limits: Limits = DEFAULT_LIMITS
) -> tuple[list[Row], list[tuple[int, Rejection]]]:
    """``parse`` over a batch: the rows, and (index, rejection) of the rest.

    The common case (a valid UTC reading without metadata or escapes, its value in range)
    takes a tight path straight from msgspec's struct to the row (the device id checked against
    the ids already seen valid); anything else goes through ``parse`` for its verdict. Text
    with no backslash cannot hold an escaped NUL or a lone surrogate (raw control bytes and
    invalid UTF-8 fail msgspec's decode).
    """
    hi, lo = now + limits.max_future, now - limits.max_age
    decode, astuple = _unchecked.decode, msgspec.structs.astuple
    bounds_of, utc, backslash, most = limits.value_range.get, UTC, _BACKSLASH, MAX_PAYLOAD_BYTES
    valid_ids, valid_id = _valid_ids, _valid_id
    rows: list[Row] = []
    rejects: list[tuple[int, Rejection]] = []
    append = rows.append
    for i, raw in enumerate(raws):
        if len(raw) <= most and backslash not in raw:
            try:
                msg = decode(raw)
            except Exception:  # noqa: S110 - every failure gets its verdict from parse
                pass
            else:
                ts = msg.timestamp
                if ts.tzinfo is utc and lo <= ts <= hi and msg.metadata is None:
                    row = astuple(msg)
                    bounds = bounds_of(row[2])
                    if (
                        bounds is not None
                        and bounds[0] <= row[3] <= bounds[1]
                        and (row[0] in valid_ids or valid_id(row[0]))
                    ):
                        append(row)
                        continue
        try:
            append(parse(raw, now, limits))
        except Rejection as rej:
            rejects.append((i, rej))
    return rows, rejects
