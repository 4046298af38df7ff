"""Device profiles (DESIGN.md 4.2a, seed 002's device parameters): the format and its checks.

A profile describes a kind of device. Each channel says where its value is (an MQTT topic
pattern with ``+``/``#`` wildcards and one ``{device}`` level, and a payload path: dotted keys
into a JSON object, or null for the whole payload), how it is encoded, its sensor type, unit and
default thresholds. Encodings:

- ``json_number``: a JSON number (not a boolean), finite;
- ``json_boolean``: ``true``/``false`` -> 1/0;
- ``string``: text (a QR/NFC reader's code): value 1 per read, the text in the metadata;
- ``hex_register``: hex text (spaces and a ``0x`` prefix allowed), of which ``length`` bytes
  at ``byteOffset`` are an integer (``signed``, ``endian``): value = int * scale + offset.

Sensor types are whatever the profiles declare: the built-in ones (``BUILTIN_RANGES``: the
specification's five and the F2 controller's) need nothing more, any other needs its physical
range (``"range": {"min": 0, "max": 5000}``) on every channel of that type, the same range
everywhere (in the profile here; across stored profiles in ``service``). The reading contract
(DESIGN.md 4.2) accepts the union of the built-in types and the declared ones
(``profiles/sensors.py``).

Everything a profile can say is bounded here, so the decoder can trust a validated profile.
"""

from __future__ import annotations

import math
import re
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from iotmon.devices.models import VALUE_RANGE
from iotmon.readings.models import ABS_MAX_VALUE

BUILTIN_RANGES = VALUE_RANGE  # the sensor types every deployment has (devices/models.py)

NAME = r"^[a-z0-9][a-z0-9._-]{0,63}$"
CHANNEL_NAME = r"^[a-z0-9][a-z0-9_-]{0,31}$"
SENSOR_TYPE = r"^[a-z][a-z0-9_]{0,31}$"
PATH = r"^[^.\x00-\x1f\x7f]{1,64}(\.[^.\x00-\x1f\x7f]{1,64}){0,7}$"
TEXT = r"^[^\x00-\x1f\x7f]*$"
BOUND = 1e9  # thresholds, scale and offset stay finite and bounded (as device thresholds do)
DEVICE_PLACEHOLDER = "{device}"
_LEVEL = re.compile(r"^[^+#{}\x00-\x1f\x7f]{1,64}$")

Encoding = Literal["json_number", "json_boolean", "string", "hex_register"]
Number = Annotated[float, Field(ge=-BOUND, le=BOUND, allow_inf_nan=False)]
Threshold = Annotated[float | None, Field(default=None, ge=-BOUND, le=BOUND, allow_inf_nan=False)]


class Register(BaseModel):
    """Where an integer sits in a hex-encoded frame, and how it becomes a value."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    byteOffset: int = Field(ge=0, le=255)
    length: Literal[1, 2, 4, 8]
    signed: bool = False
    endian: Literal["big", "little"] = "big"
    scale: Number = 1.0
    offset: Number = 0.0

    @field_validator("scale")
    @classmethod
    def _nonzero(cls, v: float) -> float:
        if v == 0:
            raise ValueError("scale must not be 0")
        return v


MAX_STATE_FOR_S = 86400.0  # a state alert waits at most a day (the engine looks 2 days back)


class StateAlert(BaseModel):
    """A state alert (``state_duration``): the channel's value equal to ``state`` for at least
    ``forSeconds`` (a door open, a siren on) opens an alert of ``severity``; the first reading
    with another value resolves it. Evaluated with time: a device that goes silent in the
    state still alerts once ``forSeconds`` have passed."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    state: float = Field(
        ge=-BOUND, le=BOUND, allow_inf_nan=False, description="the value that alerts, e.g. 1"
    )
    forSeconds: float = Field(
        ge=0, le=MAX_STATE_FOR_S, allow_inf_nan=False, description="how long it must last"
    )
    severity: Literal["low", "medium", "high", "critical"] = "medium"
    message: str = Field(
        default="",
        max_length=100,
        pattern=TEXT,
        description="what the state means, e.g. 'door open' (default: '<sensorType> = <state>')",
    )


class Thresholds(BaseModel):
    """Default thresholds for the channel's devices; ordered
    alertMin <= normalMin < normalMax <= alertMax where given."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    normalMin: Threshold = None
    normalMax: Threshold = None
    alertMin: Threshold = None
    alertMax: Threshold = None

    @model_validator(mode="after")
    def _ordered(self) -> Thresholds:
        pairs = [
            ("alertMin", self.alertMin, "normalMin", self.normalMin),
            ("normalMax", self.normalMax, "alertMax", self.alertMax),
            ("alertMin", self.alertMin, "alertMax", self.alertMax),
        ]
        for a, x, b, y in pairs:
            if x is not None and y is not None and x > y:
                raise ValueError(f"{a} ({x:g}) must not be above {b} ({y:g})")
        if (
            self.normalMin is not None
            and self.normalMax is not None
            and self.normalMin >= self.normalMax
        ):
            raise ValueError(
                f"normalMin ({self.normalMin:g}) must be below normalMax ({self.normalMax:g})"
            )
        return self


class Range(BaseModel):
    """The physical range of a sensor type: a reading outside it is refused
    (``value_out_of_range``), never stored. At most +-1e12, so no sum of squares overflows."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    min: float = Field(ge=-ABS_MAX_VALUE, le=ABS_MAX_VALUE, allow_inf_nan=False)
    max: float = Field(ge=-ABS_MAX_VALUE, le=ABS_MAX_VALUE, allow_inf_nan=False)

    @model_validator(mode="after")
    def _ordered(self) -> Range:
        if self.min >= self.max:
            raise ValueError(f"min ({self.min:g}) must be below max ({self.max:g})")
        return self

    def bounds(self) -> tuple[float, float]:
        return (self.min, self.max)

    def __str__(self) -> str:
        return f"[{self.min:g}, {self.max:g}]"


def check_topic_pattern(pattern: str) -> str:
    """An MQTT topic filter with exactly one ``{device}`` level; ``+`` and ``#`` only as whole
    levels, ``#`` last. Raises ValueError with what is wrong."""
    if len(pattern) > 256:
        raise ValueError("at most 256 characters")
    if pattern.startswith("$"):
        raise ValueError("must not start with '$' (broker topics)")
    levels = pattern.split("/")
    if len(levels) < 2:
        raise ValueError("needs at least two levels, e.g. 'devices/{device}'")
    if levels.count(DEVICE_PLACEHOLDER) != 1:
        raise ValueError("needs exactly one '{device}' level")
    if levels[1] != DEVICE_PLACEHOLDER:
        raise ValueError("the device must be the second level ('<root>/{device}/...')")
    for i, level in enumerate(levels):
        if level in ("+", DEVICE_PLACEHOLDER):
            continue
        if level == "#":
            if i != len(levels) - 1:
                raise ValueError("'#' may only be the last level")
            continue
        if not _LEVEL.match(level):
            raise ValueError(
                f"level {i + 1} ({level[:70]!r}) must be 1-64 printable characters without"
                " '+', '#', '{' or '}' (wildcards are whole levels)"
            )
    return pattern


class Channel(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)
    name: str = Field(pattern=CHANNEL_NAME, description="unique within the profile")
    topic: str = Field(
        description="MQTT topic pattern: '+' one level, '#' the rest, '{device}' the device id"
        " (the second level), e.g. 'cmnd/{device}/access-control-mode/+/door-sensors'",
    )
    path: str | None = Field(
        default=None,
        pattern=PATH,
        description="dotted keys into a JSON object payload; null = the whole payload",
    )
    timestampPath: str | None = Field(
        default=None,
        pattern=PATH,
        description="dotted keys to the device's ISO-8601 timestamp (UTC if it has no offset);"
        " null or absent from a message = the bridge's receive time",
    )
    encoding: Encoding
    reg: Register | None = Field(
        default=None, alias="register", description="for hex_register only"
    )
    sensorType: str = Field(pattern=SENSOR_TYPE)
    range: Range | None = Field(
        default=None,
        description="the sensor type's physical range; needed for a type that is not built in"
        " (the same range wherever the type is declared), else left out",
    )
    unit: str = Field(min_length=1, max_length=20, pattern=TEXT)
    thresholds: Thresholds = Field(default_factory=Thresholds)
    stateAlert: StateAlert | None = Field(
        default=None, description="alert when the value stays at one state too long"
    )

    @field_validator("topic")
    @classmethod
    def _topic(cls, v: str) -> str:
        return check_topic_pattern(v)

    @model_validator(mode="after")
    def _state_alert(self) -> Channel:
        a = self.stateAlert
        if a is not None and self.encoding == "string":
            raise ValueError(
                "stateAlert: a 'string' channel's value is 1 at every read, so the state"
                " would never change and the alert never resolve"
            )
        if a is not None and self.encoding == "json_boolean" and a.state not in (0, 1):
            raise ValueError(
                f"stateAlert: a json_boolean channel's values are 0 and 1, never {a.state:g}"
            )
        return self

    @model_validator(mode="after")
    def _register(self) -> Channel:
        if self.encoding == "hex_register" and self.reg is None:
            raise ValueError("encoding 'hex_register' needs 'register'")
        if self.encoding != "hex_register" and self.reg is not None:
            raise ValueError(f"'register' is for hex_register only, not {self.encoding!r}")
        if self.reg is not None:  # the extreme raw values must give finite values
            r = self.reg
            bits = 8 * r.length
            lo, hi = (-(2 ** (bits - 1)), 2 ** (bits - 1) - 1) if r.signed else (0, 2**bits - 1)
            if not all(math.isfinite(x * r.scale + r.offset) for x in (lo, hi)):
                raise ValueError("scale and offset overflow for this register length")
        return self

    @model_validator(mode="after")
    def _range(self) -> Channel:
        builtin = BUILTIN_RANGES.get(self.sensorType)
        if builtin is None and self.range is None:
            raise ValueError(
                f"sensor type {self.sensorType!r} is not built in: declare its physical range,"
                ' e.g. "range": {"min": 0, "max": 5000}'
            )
        if builtin is not None and self.range is not None and self.range.bounds() != builtin:
            raise ValueError(
                f"sensor type {self.sensorType!r} is built in with range"
                f" [{builtin[0]:g}, {builtin[1]:g}]: leave 'range' out, or give that one"
            )
        return self

    def value_range(self) -> tuple[float, float]:
        """The physical range of this channel's sensor type."""
        if self.range is not None:
            return self.range.bounds()
        return BUILTIN_RANGES[self.sensorType]  # a validated channel has one or the other


class ProfileBody(BaseModel):
    """What ``PUT /api/profiles/{name}`` takes (the name is in the path)."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    description: str = Field(default="", max_length=500, pattern=TEXT)
    channels: list[Channel] = Field(min_length=1, max_length=64)

    @field_validator("channels")
    @classmethod
    def _unique(cls, v: list[Channel]) -> list[Channel]:
        seen: set[str] = set()
        ranges: dict[str, Channel] = {}
        for c in v:
            if c.name in seen:
                raise ValueError(f"channel name {c.name!r} appears twice")
            seen.add(c.name)
            first = ranges.setdefault(c.sensorType, c)
            if first.value_range() != c.value_range():
                raise ValueError(
                    f"channels {first.name!r} and {c.name!r} give sensor type {c.sensorType!r}"
                    f" different ranges ({first.range} and {c.range}): one type, one range"
                )
        return v

    def declared_ranges(self) -> dict[str, tuple[int, Range]]:
        """The ranges this profile declares for types that are not built in: type ->
        (index of the first channel declaring it, range)."""
        out: dict[str, tuple[int, Range]] = {}
        for i, c in enumerate(self.channels):
            if c.range is not None and c.sensorType not in BUILTIN_RANGES:
                out.setdefault(c.sensorType, (i, c.range))
        return out


class Profile(ProfileBody):
    """A whole profile (``POST /api/profiles``)."""

    name: str = Field(pattern=NAME)


def channel_device_id(device: str, profile: ProfileBody, channel: Channel) -> str:
    """The device id a channel's readings carry: the device itself when its profile has one
    channel (the specification's devices), else ``<device>:<channel>`` (each channel of an F2
    controller is a device of its own for statistics, thresholds and alerts)."""
    return device if len(profile.channels) == 1 else f"{device}:{channel.name}"
