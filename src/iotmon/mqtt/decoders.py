"""One raw MQTT message + its device's profile -> readings (DESIGN.md 4.2 shape), or a
``Rejection`` with a reason. Pure, and total: whatever the bytes, no other exception leaves
``decode`` (tests/unit/mqtt/test_decode_fuzz.py holds it to that).

Topics: ``[root]<kind>/<device>/...``: the device id is the second level after the deployment's
topic root (``IOTMON_MQTT_TOPIC_ROOT``, empty by default). A channel matches a topic by its
pattern (``+`` one level, ``#`` the rest, ``{device}`` the device). One message may feed several
channels (a map of door sensors); a channel whose path is absent from a message is skipped, a
present value that is wrong rejects the whole message (it stays on the raw topic, to be decoded
again once the device or its profile is fixed).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, cast

import orjson

from iotmon.bus.pipeline import Reasons, Rejection
from iotmon.profiles.models import Channel, ProfileBody, channel_device_id
from iotmon.readings.models import DEVICE_ID, MAX_PAYLOAD_BYTES, unstorable
from iotmon.timefmt import iso_utc

MAX_TOPIC_CHARS = 256
MAX_STRING_CHARS = 1024  # a QR/NFC code
MAX_HEX_CHARS = 2048
_MISSING = object()


class Reason:
    """Why a raw message was not decoded (``x-iotmon-reason`` on ``mqtt-raw.dlq``)."""

    PAYLOAD_TOO_LARGE = "payload_too_large"
    INVALID_TOPIC = "invalid_topic"  # no device level, not text, too long, a bad device id
    UNKNOWN_DEVICE = "unknown_device"  # no device with a profile (the role decides this)
    NO_CHANNEL = "no_channel"  # the device's profile has no channel for this topic
    NO_VALUE = "no_value"  # channels match, but none of their paths is in the message
    INVALID_JSON = "invalid_json"
    INVALID_VALUE = "invalid_value"  # not the encoding the channel says (type, hex, text)
    INVALID_TIMESTAMP = "invalid_timestamp"
    NON_FINITE_VALUE = "non_finite_value"
    VALUE_OUT_OF_RANGE = "value_out_of_range"
    INVALID_TEXT = "invalid_text"  # NUL or a lone surrogate: PostgreSQL cannot store it
    MISSING_HEADER = "missing_header"  # a record on mqtt-raw without the bridge's headers

    ALL = (
        PAYLOAD_TOO_LARGE,
        INVALID_TOPIC,
        UNKNOWN_DEVICE,
        NO_CHANNEL,
        NO_VALUE,
        INVALID_JSON,
        INVALID_VALUE,
        INVALID_TIMESTAMP,
        NON_FINITE_VALUE,
        VALUE_OUT_OF_RANGE,
        INVALID_TEXT,
        MISSING_HEADER,
    )


def strip_root(topic: str, root: str) -> str | None:
    """The topic without the deployment's root, or None if it is not under it."""
    if not root:
        return topic
    return topic[len(root) :] if topic.startswith(root) else None


def device_of(topic: str, root: str = "") -> str | Rejection:
    """The device id of a topic (its second level under ``root``), or why there is none."""
    rel = strip_root(topic, root)
    if rel is None:
        return Rejection(Reason.INVALID_TOPIC, f"{topic[:100]!r} is not under {root!r}")
    levels = rel.split("/", 2)
    if len(levels) < 2 or not levels[1]:
        return Rejection(Reason.INVALID_TOPIC, f"{topic[:100]!r} has no device level")
    device = levels[1]
    if not DEVICE_ID.match(device):
        return Rejection(
            Reason.INVALID_TOPIC,
            f"device {device[:60]!r} is not a device id (letters, digits, . _ : -, 1-50)",
        )
    return device


def topic_matches(pattern: str, levels: list[str], device: str) -> bool:
    parts = pattern.split("/")
    for i, part in enumerate(parts):
        if part == "#":
            return True
        if i >= len(levels):
            return False
        if part == "+":
            continue
        if part == "{device}":
            if levels[i] != device:
                return False
            continue
        if part != levels[i]:
            return False
    return len(parts) == len(levels)


@dataclass(frozen=True, slots=True)
class _Channel:
    """One channel of a route, with what does not depend on the message worked out."""

    channel: Channel
    path: tuple[str, ...] | None
    ts_path: tuple[str, ...] | None
    lo: float
    hi: float
    reading_id: str
    id_error: Rejection | None  # raised where the reading id is checked, as before
    meta_error: Rejection | None  # the metadata without extras is not storable


@dataclass(frozen=True, slots=True)
class Route:
    """What messages on one topic decode by under one profile: the device, the channels
    that match the topic, and whether the payload is JSON to parse (and must be)."""

    device: str
    channels: tuple[_Channel, ...]
    parse: bool
    required: bool


# Routes by (id(profile), root, topic). The ids are safe only while the profiles live: the
# decoder's Catalog holds the profiles and this cache together (a reload makes both anew).
Routes = dict[tuple[int, str, str], "Route | Rejection"]
MAX_ROUTES = 100_000


def route(topic: str, profile: ProfileBody, root: str = "") -> Route | Rejection:
    """The topic's route under ``profile``, or why no message on it decodes."""
    try:
        return _route(topic, profile, root)
    except Rejection as rej:
        return rej


def _route(topic: str, profile: ProfileBody, root: str) -> Route:
    if len(topic) > MAX_TOPIC_CHARS or unstorable(topic) is not None:
        raise Rejection(Reason.INVALID_TOPIC, "longer than 256 characters, or not storable text")
    device = device_of(topic, root)
    if isinstance(device, Rejection):
        raise device
    rel = strip_root(topic, root) or ""
    levels = rel.split("/")
    channels = [c for c in profile.channels if topic_matches(c.topic, levels, device)]
    if not channels:
        raise Rejection(Reason.NO_CHANNEL, f"no channel of the device's profile matches {rel!r}")
    out = []
    for c in channels:
        lo, hi = c.value_range()  # built in, or the profile's (the same everywhere)
        reading_id = channel_device_id(device, profile, c)
        id_error = None
        if not DEVICE_ID.match(reading_id):
            id_error = Rejection(
                Reason.INVALID_TOPIC, f"{reading_id[:60]!r} is too long for a device id (50)"
            )
        meta_error = None
        try:
            _check_metadata(c.name, {"channel": c.name, "topic": topic, "clock": "bridge"})
        except Rejection as rej:
            meta_error = rej
        out.append(
            _Channel(
                c,
                None if c.path is None else tuple(c.path.split(".")),
                None if c.timestampPath is None else tuple(c.timestampPath.split(".")),
                lo,
                hi,
                reading_id,
                id_error,
                meta_error,
            )
        )
    return Route(
        device,
        tuple(out),
        parse=any(
            c.path is not None or c.encoding.startswith("json") or c.timestampPath for c in channels
        ),
        required=any(c.path is not None or c.encoding.startswith("json") for c in channels),
    )


def decode(
    topic: str,
    payload: bytes,
    received_at: datetime,
    profile: ProfileBody,
    *,
    root: str = "",
    location: str | None = None,
    routes: Routes | None = None,
) -> list[dict[str, Any]] | Rejection:
    """The readings of one MQTT message under ``profile``, or why there are none.
    ``routes``: a cache of the topics' routes (see ``Routes``), the same result without it."""
    try:
        return _decode(topic, payload, received_at, profile, root, location, routes)
    except Rejection as rej:
        return rej
    except RecursionError:
        return Rejection(Reason.INVALID_JSON, "nested too deeply")
    except Exception as exc:  # a surprise is this message's problem; the fuzz tests say none
        return Rejection(Reasons.DECODER_ERROR, f"{type(exc).__name__}: {exc}"[:300])


def _decode(
    topic: str,
    payload: bytes,
    received_at: datetime,
    profile: ProfileBody,
    root: str,
    location: str | None,
    routes: Routes | None,
) -> list[dict[str, Any]]:
    if routes is None:
        r = route(topic, profile, root)
    else:
        key = (id(profile), root, topic)
        r = routes.get(key)  # type: ignore[assignment]
        if r is None:
            if len(routes) >= MAX_ROUTES:
                routes.clear()
            r = routes[key] = route(topic, profile, root)
    if isinstance(r, Rejection):
        if len(payload) > MAX_PAYLOAD_BYTES:  # the size is checked first, as it always was
            raise too_large(payload)
        raise r
    return _readings(topic, payload, received_at, r, location)


def decode_routed(
    topic: str, payload: bytes, received_at: datetime, r: Route, location: str | None
) -> list[dict[str, Any]] | Rejection:
    """``decode`` with the topic's route already found (the decoder caches it by topic)."""
    try:
        return _readings(topic, payload, received_at, r, location)
    except Rejection as rej:
        return rej
    except RecursionError:
        return Rejection(Reason.INVALID_JSON, "nested too deeply")
    except Exception as exc:  # a surprise is this message's problem; the fuzz tests say none
        return Rejection(Reasons.DECODER_ERROR, f"{type(exc).__name__}: {exc}"[:300])


def too_large(payload: bytes) -> Rejection:
    return Rejection(
        Reason.PAYLOAD_TOO_LARGE,
        f"{len(payload)} bytes is over the {MAX_PAYLOAD_BYTES}-byte limit",
    )


def _readings(
    topic: str, payload: bytes, received_at: datetime, r: Route, location: str | None
) -> list[dict[str, Any]]:
    if len(payload) > MAX_PAYLOAD_BYTES:
        raise too_large(payload)
    doc: Any = _json(payload, required=r.required) if r.parse else _MISSING
    received = received_at if received_at.tzinfo else received_at.replace(tzinfo=UTC)
    readings: list[dict[str, Any]] = []
    last_path: tuple[str, ...] | None = None
    last_stamp: tuple[str, str] | None = None
    for rc in r.channels:
        channel = rc.channel
        path = rc.path
        if path is None:
            raw = _MISSING
        else:
            if len(path) == 1:  # _at, inlined for the usual one-key path
                raw = doc.get(path[0], _MISSING) if type(doc) is dict else _MISSING
            else:
                raw = _at(doc, path)
            if raw is _MISSING:
                continue  # this message does not carry this channel
        kind = type(raw)
        extra: dict[str, Any] | None
        if (kind is float or kind is int) and channel.encoding == "json_number":
            value, extra = float(cast(float, raw)), None  # _value's answer (bools excluded)
        else:
            value, extra = _value(channel, raw, doc, payload)
        if not math.isfinite(value):
            raise Rejection(Reason.NON_FINITE_VALUE, f"{channel.name}: {value!r} is not a reading")
        if not rc.lo <= value <= rc.hi:
            raise Rejection(
                Reason.VALUE_OUT_OF_RANGE,
                f"{channel.name}: {value!r} is outside the physical range of "
                f"{channel.sensorType} [{rc.lo:g}, {rc.hi:g}]",
            )
        if rc.ts_path != last_path or last_stamp is None:  # channels share the time field
            last_path, last_stamp = rc.ts_path, _timestamp(channel.name, rc.ts_path, doc, received)
        stamp, clock = last_stamp
        if rc.id_error is not None:
            raise rc.id_error
        metadata = {"channel": channel.name, "topic": topic, "clock": clock}
        if extra:
            metadata.update(extra)
        reading: dict[str, Any] = {
            "deviceId": rc.reading_id,
            "timestamp": stamp,
            "sensorType": channel.sensorType,
            "value": value,
            "unit": channel.unit,
            "status": "active",
            "metadata": metadata,
        }
        if location:
            reading["location"] = location
        if rc.meta_error is not None:
            raise rc.meta_error
        if extra:
            _check_metadata(channel.name, metadata)
        readings.append(reading)
    if not readings:
        paths = ", ".join(sorted({str(c.channel.path) for c in r.channels}))
        raise Rejection(Reason.NO_VALUE, f"the message has none of the channels' paths ({paths})")
    return readings


def _check_metadata(name: str, metadata: dict[str, Any]) -> None:
    """What the reading contract stores as jsonb (the same test as readings/models.py)."""
    try:
        encoded = orjson.dumps(metadata)
    except orjson.JSONEncodeError:
        raise Rejection(Reason.INVALID_TEXT, f"{name}: text that cannot be stored") from None
    if b"\\u0000" in encoded:
        raise Rejection(Reason.INVALID_TEXT, f"{name}: a NUL (or its escape) in the text")


def _json(payload: bytes, *, required: bool) -> Any:
    try:
        return orjson.loads(payload)
    except orjson.JSONDecodeError as exc:
        if not required:
            return _MISSING
        raise Rejection(Reason.INVALID_JSON, str(exc)[:300]) from None


def _at(doc: Any, path: tuple[str, ...]) -> Any:
    for key in path:
        if not isinstance(doc, dict):
            return _MISSING
        doc = doc.get(key, _MISSING)
        if doc is _MISSING:
            return _MISSING
    return doc


def _value(channel: Channel, raw: Any, doc: Any, payload: bytes) -> tuple[float, dict[str, Any]]:
    name, encoding = channel.name, channel.encoding
    whole = channel.path is None
    if encoding == "json_number":
        v = doc if whole else raw
        if isinstance(v, bool) or not isinstance(v, int | float):
            raise Rejection(Reason.INVALID_VALUE, f"{name}: expected a JSON number, got {_kind(v)}")
        return float(v), {}
    if encoding == "json_boolean":
        v = doc if whole else raw
        if not isinstance(v, bool):
            raise Rejection(Reason.INVALID_VALUE, f"{name}: expected true or false, got {_kind(v)}")
        return (1.0 if v else 0.0), {}
    text = _text(name, payload) if whole else raw
    if not isinstance(text, str):
        raise Rejection(Reason.INVALID_VALUE, f"{name}: expected text, got {_kind(text)}")
    if encoding == "string":
        code = text.strip()
        if not code or len(code) > MAX_STRING_CHARS:
            raise Rejection(
                Reason.INVALID_VALUE, f"{name}: a code is 1-{MAX_STRING_CHARS} characters"
            )
        if unstorable(code) is not None:
            raise Rejection(Reason.INVALID_TEXT, f"{name}: a NUL or a lone surrogate")
        return 1.0, {"code": code}
    reg = channel.reg
    assert reg is not None  # a validated profile's hex_register channel has one
    frame = _hex(name, text)
    end = reg.byteOffset + reg.length
    if end > len(frame):
        raise Rejection(
            Reason.INVALID_VALUE,
            f"{name}: bytes {reg.byteOffset}-{end - 1} are past the {len(frame)}-byte frame",
        )
    number = int.from_bytes(frame[reg.byteOffset : end], reg.endian, signed=reg.signed)
    # 12 significant digits: 474 * 0.1 is stored as 47.4, not 47.400000000000006 (the
    # register's integer has at most 8 bytes, and stored values stay within +-1e12).
    return float(f"{number * reg.scale + reg.offset:.12g}"), {"raw": frame.hex()}


def _text(name: str, payload: bytes) -> str:
    try:
        return payload.decode("utf-8")
    except UnicodeDecodeError:
        raise Rejection(Reason.INVALID_VALUE, f"{name}: the payload is not UTF-8 text") from None


def _hex(name: str, text: str) -> bytes:
    digits = "".join(text.split())
    if digits[:2] in ("0x", "0X"):
        digits = digits[2:]
    if not digits or len(digits) > MAX_HEX_CHARS or len(digits) % 2 or not digits.isascii():
        raise Rejection(
            Reason.INVALID_VALUE,
            f"{name}: expected an even number (2-{MAX_HEX_CHARS}) of hex digits",
        )
    try:
        return bytes.fromhex(digits)
    except ValueError:
        raise Rejection(Reason.INVALID_VALUE, f"{name}: not hex: {digits[:40]!r}") from None


_received_text: tuple[datetime | None, str] = (None, "")


def _timestamp(
    name: str, path: tuple[str, ...] | None, doc: Any, received: datetime
) -> tuple[str, str]:
    """The reading's timestamp as stored (ISO 8601, UTC, milliseconds) and its clock."""
    global _received_text
    raw = _MISSING if path is None or doc is _MISSING else _at(doc, path)
    if raw is _MISSING or raw is None:
        last, text = _received_text  # one receive time for all of a bridge's read
        if last is not received:
            text = iso_utc(received)
            _received_text = (received, text)
        return text, "bridge"
    try:
        if isinstance(raw, str) and len(raw) <= 64:
            ts = datetime.fromisoformat(raw)
            if _canonical(raw):  # already the stored form (what iso_utc would give)
                return raw, "device"
        elif isinstance(raw, int | float) and not isinstance(raw, bool):
            ts = datetime.fromtimestamp(raw, UTC)  # Unix seconds
        else:
            raise ValueError(f"expected ISO-8601 text or Unix seconds, got {_kind(raw)}")
        ts = ts.replace(tzinfo=UTC) if ts.tzinfo is None else ts.astimezone(UTC)
    except (ValueError, OverflowError, OSError) as exc:
        raise Rejection(Reason.INVALID_TIMESTAMP, f"{name}: {str(exc)[:200]}") from None
    return iso_utc(ts), "device"


def _canonical(raw: str) -> bool:
    """``YYYY-MM-DDTHH:MM:SS.mmmZ`` (which ``fromisoformat`` accepted): ``iso_utc`` of it is
    itself."""
    return (
        len(raw) == 24
        and raw[23] == "Z"
        and raw[10] == "T"
        and raw[19] == "."
        and raw[4] == "-"
        and raw[7] == "-"
        and raw[13] == ":"
        and raw[16] == ":"
        and raw.isascii()
    )


def _kind(v: Any) -> str:
    if v is _MISSING:
        return "nothing"
    if v is None:
        return "null"
    if isinstance(v, bool):
        return "a boolean"
    if isinstance(v, int | float):
        return "a number"
    if isinstance(v, str):
        return "text"
    if isinstance(v, list):
        return "a list"
    if isinstance(v, dict):
        return "an object"
    return type(v).__name__
