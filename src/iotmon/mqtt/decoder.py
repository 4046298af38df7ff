"""The decoder's state beside the pure ``decode``: the profiles and devices it decodes by (a
snapshot of PostgreSQL, reloaded every few seconds), and the dedup window that stores a
redelivered MQTT message once."""

from __future__ import annotations

import hashlib
from collections import OrderedDict
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, NamedTuple

from pydantic import ValidationError

from iotmon import logging as log
from iotmon.bus import Headers
from iotmon.bus.pipeline import Rejection
from iotmon.mqtt.bridge import H_DUP, H_RECEIVED, H_TOPIC
from iotmon.mqtt.decoders import (
    MAX_ROUTES,
    Reason,
    Route,
    Routes,
    decode_routed,
    device_of,
    route,
    too_large,
)
from iotmon.profiles.models import Profile, ProfileBody
from iotmon.readings.models import MAX_PAYLOAD_BYTES

logger = log.get(__name__)


@dataclass(slots=True)
class Catalog:
    """Validated profiles by name, and each device's (profile, location)."""

    profiles: dict[str, ProfileBody] = field(default_factory=dict)
    devices: dict[str, tuple[str, str | None]] = field(default_factory=dict)
    routes: Routes = field(default_factory=dict)  # lives and dies with these profiles
    topic_devices: dict[tuple[str, str], str | Rejection] = field(default_factory=dict)
    rows: dict[str, Any] = field(default_factory=dict)  # the stored rows the profiles are of
    # raw topic (bytes, as in the bridge's header) -> (root, topic, route, location) or why
    # its messages cannot decode: one lookup a message instead of five (lives with the
    # devices and profiles of this catalog)
    by_topic: dict[bytes, tuple[str, str, Route | Rejection, str | None] | Rejection] = field(
        default_factory=dict
    )

    @classmethod
    def build(
        cls,
        profiles: dict[str, Any],
        devices: dict[str, tuple[str, Any]],
        previous: Catalog | None = None,
    ) -> Catalog:
        """From ``profiles.service.load_all``; a stored profile that does not validate is
        logged and left out (its devices' messages go to the DLQ, kept for later).

        With the ``previous`` catalog (the reload every few seconds), profiles whose stored
        row did not change are kept as they were, and so is the route cache when none
        changed: rebuilding 1,000 devices' routes after every reload was a tenth of the
        decoder's time under bench mqtt. The topic -> device cache depends on no profile."""
        valid: dict[str, ProfileBody] = {}
        old = previous or cls()
        same = previous is not None and old.rows == profiles
        for name, row in profiles.items():
            if name in old.profiles and old.rows.get(name) == row:
                valid[name] = old.profiles[name]
                continue
            try:
                valid[name] = Profile.model_validate({"name": name, **row})
            except ValidationError as exc:
                logger.error(
                    "stored profile is invalid, skipped", profile=name, error=str(exc)[:300]
                )
        return cls(
            valid,
            {d: (p, loc) for d, (p, loc) in devices.items()},
            # keyed by id(profile): kept only when every profile object is the same one
            routes=old.routes if same else {},
            topic_devices=old.topic_devices,
            rows=profiles,
        )


def _resolve(
    raw_topic: bytes, catalog: Catalog, root: str
) -> tuple[str, str, Route | Rejection, str | None] | Rejection:
    try:
        topic = raw_topic.decode("utf-8")
    except UnicodeDecodeError as exc:
        return Rejection(Reason.MISSING_HEADER, f"unreadable bridge header: {exc}"[:300])
    devices_of = catalog.topic_devices  # by (root, topic)
    device = devices_of.get((root, topic))
    if device is None:
        if len(devices_of) >= MAX_ROUTES:
            devices_of.clear()
        device = devices_of[root, topic] = device_of(topic, root)
    if isinstance(device, Rejection):
        return device
    known = catalog.devices.get(device)
    if known is None:
        return Rejection(
            Reason.UNKNOWN_DEVICE,
            f"device {device!r} has no profile: PUT /api/devices/{device}/profile",
        )
    profile = catalog.profiles.get(known[0])
    if profile is None:
        return Rejection(Reason.UNKNOWN_DEVICE, f"profile {known[0]!r} is missing or invalid")
    key = (id(profile), root, topic)
    routes = catalog.routes
    r = routes.get(key)
    if r is None:
        if len(routes) >= MAX_ROUTES:
            routes.clear()
        r = routes[key] = route(topic, profile, root)
    return (root, topic, r, known[1])


class Decoded(NamedTuple):
    """The readings of one raw record, each with its dedup key (a tuple: a frozen
    dataclass's __init__ was 3% of the decoder)."""

    readings: list[tuple[tuple[str, ...], dict[str, Any]]]
    redelivered: bool
    received_at: datetime


def header(headers: Headers | None, name: str) -> bytes | None:
    for k, v in headers or ():
        if k == name:
            return v
    return None


_received: tuple[bytes | None, datetime] = (None, datetime.min)


def _received_at(raw: bytes) -> datetime:
    """The receive-time header as a datetime (a bridge stamps a whole read with one time,
    so the last one is kept)."""
    global _received
    last, at = _received
    if raw != last:
        at = datetime.fromisoformat(raw.decode("ascii"))
        _received = (raw, at)
    return at


def decode_record(
    value: bytes, headers: Headers | None, catalog: Catalog, root: str
) -> Decoded | Rejection:
    """One record of ``mqtt-raw`` (the bridge's value and headers) -> its readings."""
    raw_topic = raw_received = dup = None
    for k, v in headers or ():
        if k == H_TOPIC:
            raw_topic = v if raw_topic is None else raw_topic
        elif k == H_RECEIVED:
            raw_received = v if raw_received is None else raw_received
        elif k == H_DUP:
            dup = v if dup is None else dup
    if raw_topic is None or raw_received is None:
        return Rejection(Reason.MISSING_HEADER, f"needs the bridge's {H_TOPIC} and {H_RECEIVED}")
    try:
        received = _received_at(raw_received)
    except (UnicodeDecodeError, ValueError) as exc:
        return Rejection(Reason.MISSING_HEADER, f"unreadable bridge header: {exc}"[:300])
    hit = catalog.by_topic.get(raw_topic)
    if hit is None or (not isinstance(hit, Rejection) and hit[0] != root):
        by_topic = catalog.by_topic
        if len(by_topic) >= MAX_ROUTES:
            by_topic.clear()
        hit = by_topic[raw_topic] = _resolve(raw_topic, catalog, root)
    if isinstance(hit, Rejection):  # the topic, its device or profile: before the size
        return hit
    _, topic, rt, location = hit
    if isinstance(rt, Rejection):  # no route: after the size, as decode checks them
        return too_large(value) if len(value) > MAX_PAYLOAD_BYTES else rt
    got = decode_routed(topic, value, received, rt, location)
    if isinstance(got, Rejection):
        return got
    digest = None
    keyed = []
    for r in got:
        if r["metadata"]["clock"] == "device":
            key: tuple[str, ...] = (r["deviceId"], r["timestamp"])
        else:  # no device timestamp: the same bytes on the same topic, if redelivered
            if digest is None:
                digest = hashlib.blake2b(value, digest_size=12).hexdigest()
            key = (r["deviceId"], topic, digest)
        keyed.append((key, r))
    return Decoded(keyed, dup == b"1", received)


class Dedup:
    """The keys of the readings produced lately from one partition of ``mqtt-raw``, bounded
    by age (by receive time) and count, with a pending part for the batch in flight.

    A reading with the device's own timestamp is a duplicate when its (device id with
    channel, device timestamp) was produced within the window, whatever the flag. A reading
    stamped with the bridge's receive time (no device timestamp: a QR code) is a duplicate
    only when the broker marked the message a redelivery (``dup``) and the same bytes on the
    same topic were produced within the window: two real reads of one code stay two.

    ``admit`` decides against what is committed and what this batch admitted so far;
    ``commit`` keeps the batch's keys once its transaction committed, ``rollback`` forgets
    them when it did not (the batch is decoded again). The decision for a key depends only on
    the keys of the records before it and their receive times (age is checked at ``admit``,
    not at eviction), so replaying the partition's last records rebuilds the same window.
    Keys are kept as their 64-bit hashes (a false duplicate needs a collision among the
    window's keys: about n^2 / 2^65)."""

    def __init__(self, window_s: float, max_keys: int) -> None:
        self.window_s = window_s
        self.max_keys = max_keys
        self._seen: OrderedDict[int, float] = OrderedDict()
        self._pending: dict[int, float] = {}
        self.dropped = 0

    def admit(
        self, key: tuple[str, ...], at: float, *, clock_device: bool, redelivered: bool
    ) -> bool:
        """True if this reading is new (and remember it, pending); False for a duplicate."""
        h = hash(key)
        if clock_device or redelivered:
            when = self._pending.get(h)
            if when is None:
                when = self._seen.get(h)
            if when is not None and when >= at - self.window_s:
                self.dropped += 1
                return False
        self._pending[h] = at
        return True

    def commit(self) -> None:
        seen = self._seen
        newest = 0.0
        for h, at in self._pending.items():
            seen[h] = at
            seen.move_to_end(h)
            newest = max(newest, at)
        self._pending.clear()
        horizon = newest - self.window_s
        while seen:
            oldest_key, oldest_at = next(iter(seen.items()))
            if len(seen) <= self.max_keys and oldest_at >= horizon:
                break
            del seen[oldest_key]

    def rollback(self) -> None:
        self._pending.clear()

    def __len__(self) -> int:
        return len(self._seen)
