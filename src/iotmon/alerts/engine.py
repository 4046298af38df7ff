"""The alert engine: candidates from processing become alerts (duration condition,
deduplication, silences), devices that go quiet become ``device_offline`` alerts, unacknowledged
alerts escalate, and every change is stored, mirrored in ``alerts:active``, announced as a
Socket.IO event and notified. Time comes from an injectable clock."""

from __future__ import annotations

import asyncio
import functools
import time
from collections.abc import Awaitable, Callable, Coroutine
from datetime import UTC, datetime, timedelta
from typing import Any, Concatenate, ParamSpec, TypeVar

import orjson
import psycopg
import redis.asyncio as aioredis

from iotmon import logging as log
from iotmon.alerts import lifecycle, rules
from iotmon.alerts.models import Alert
from iotmon.alerts.notify import Notifier
from iotmon.stats import publish
from iotmon.timefmt import iso_utc

logger = log.get(__name__)

# The Redis keys are defined once, with the ones processing writes.
ACTIVE_KEY = publish.ACTIVE_ALERTS_KEY
LAST_SEEN_KEY = publish.LAST_SEEN_KEY
SPANS_REFRESH_S = 10.0

Emit = Callable[[str, dict[str, Any], str], Awaitable[None]]  # (event, payload, room)

T = TypeVar("T")
P = ParamSpec("P")


def _serialized(
    method: Callable[Concatenate[AlertEngine, P], Coroutine[Any, Any, T]],
) -> Callable[Concatenate[AlertEngine, P], Coroutine[Any, Any, T]]:
    """One operation at a time: the engine's connection is shared by the candidate loop, the
    offline poller, housekeeping and operators, and psycopg transactions must not interleave."""

    @functools.wraps(method)
    async def wrapper(self: AlertEngine, /, *args: P.args, **kwargs: P.kwargs) -> T:
        async with self._lock:
            return await method(self, *args, **kwargs)

    return wrapper


async def _no_emit(event: str, payload: dict[str, Any], room: str) -> None:
    return None


class AlertEngine:
    def __init__(
        self,
        *,
        conn: psycopg.AsyncConnection[Any],
        redis: aioredis.Redis,
        notifier: Notifier,
        config: rules.RuleConfig = rules.RuleConfig(),  # noqa: B008
        emit: Emit = _no_emit,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.conn = conn
        self.redis = redis
        self.notifier = notifier
        self.config = config
        self.emit = emit
        self.clock = clock
        self.breaches = rules.BreachTracker(config)
        self.offline: set[str] = set()
        self._spans: dict[str, float] = {}
        self._timeouts: dict[str, float] = {}
        self._spans_at = -1e18
        self._lock = asyncio.Lock()
        self.stats = {"candidates": 0, "triggered": 0, "resolved": 0, "escalated": 0}

    def now(self) -> datetime:
        return datetime.fromtimestamp(self.clock(), UTC)

    @_serialized
    async def start(self) -> None:
        """Pick up what is open (after a restart) and mirror it in Redis."""
        open_now = await lifecycle.open_alerts(self.conn)
        self.offline = {a.device_id for a in open_now if a.alert_type == "device_offline"}
        pipe = self.redis.pipeline(transaction=True)
        pipe.delete(ACTIVE_KEY)
        for a in open_now:
            pipe.hset(ACTIVE_KEY, str(a.id), orjson.dumps(a.as_event()))
        await pipe.execute()

    async def _refresh_devices(self) -> None:
        """Normal spans (for severity) and offline timeouts, re-read every 10 s so edits to
        the devices table take effect without a restart."""
        if self.clock() - self._spans_at <= SPANS_REFRESH_S:
            return
        cur = await self.conn.execute(
            "SELECT device_id, normal_max - normal_min, offline_timeout_s FROM devices"
        )
        rows = await cur.fetchall()
        self._spans = {d: float(s) for d, s, _ in rows if s is not None}
        self._timeouts = {d: float(t) for d, _, t in rows if t is not None}
        self._spans_at = self.clock()

    async def _span(self, device_id: str) -> float | None:
        await self._refresh_devices()
        return self._spans.get(device_id)

    def timeout(self, device_id: str) -> float:
        return self._timeouts.get(device_id, self.config.offline_timeout_s)

    # --- publishing a change ---
    async def _changed(self, alert: Alert, event: str | None) -> None:
        if alert.status == "resolved":
            await self.redis.hdel(ACTIVE_KEY, str(alert.id))
        else:
            await self.redis.hset(ACTIVE_KEY, str(alert.id), orjson.dumps(alert.as_event()))
        if event is None:
            return
        payload = alert.as_event()
        await self.emit(event, payload, "alerts")
        await self.emit(event, payload, f"device:{alert.device_id}")
        if event in ("alert-triggered", "alert-escalated", "alert-resolved"):
            await self.notifier.notify(event, alert)

    async def _open(
        self,
        device_id: str,
        alert_type: str,
        *,
        value: float | None,
        threshold: float | None,
        unit: str = "",
        zscore: float | None = None,
        at: datetime | None = None,
    ) -> tuple[Alert, bool]:
        at = at or self.now()
        silenced = await lifecycle.silenced(self.conn, device_id, alert_type, self.now())
        alert, created = await lifecycle.open_or_update(
            self.conn,
            device_id=device_id,
            alert_type=alert_type,
            message=rules.message(
                alert_type, device_id, value, threshold, unit, self.timeout(device_id)
            ),
            severity=rules.severity(
                alert_type, value, threshold, await self._span(device_id), zscore
            ),
            value=value,
            threshold=threshold,
            at=at,
            silenced=silenced,
        )
        if created:
            self.stats["triggered"] += 1
            logger.info(
                "alert triggered",
                alert=alert.id,
                device=device_id,
                type=alert_type,
                severity=alert.severity,
                silenced=silenced,
            )
        await self._changed(alert, "alert-triggered" if created else None)
        return alert, created

    async def _resolve_open(
        self, device_id: str, alert_type: str, actor: str = "system", note: str | None = None
    ) -> Alert | None:
        alert = await lifecycle.find_open(self.conn, device_id, alert_type)
        if alert is None:
            return None
        resolved = await lifecycle.resolve(self.conn, alert.id, actor, note)
        self.stats["resolved"] += 1
        logger.info("alert resolved", alert=alert.id, device=device_id, type=alert_type, by=actor)
        await self._changed(resolved, "alert-resolved")
        return resolved

    # --- inputs ---
    @_serialized
    async def handle(self, candidate: dict[str, Any]) -> Alert | None:
        """One candidate from processing (see stats/processor.py)."""
        self.stats["candidates"] += 1
        device_id, kind = candidate["deviceId"], candidate["type"]
        if candidate.get("state") == "clear":
            self.breaches.clear(device_id, kind)
            return await self._resolve_open(device_id, kind, note="back inside the normal range")
        t = _parse_ts(candidate.get("timestamp")) or self.clock()
        if not self.breaches.observe(device_id, kind, t):
            return None
        alert, _ = await self._open(
            device_id,
            kind,
            value=candidate.get("value"),
            threshold=candidate.get("threshold"),
            unit=candidate.get("unit", ""),
            zscore=candidate.get("zscore"),
            at=datetime.fromtimestamp(t, UTC),
        )
        return alert

    @_serialized
    async def check_offline(self) -> None:
        """Devices silent past the timeout go offline; devices heard again come back."""
        await self._refresh_devices()
        now = self.clock()
        seen: list[tuple[bytes, float]] = await self.redis.zrange(  # type: ignore[assignment]
            LAST_SEEN_KEY, 0, -1, withscores=True
        )
        for raw, last in seen:
            device_id = raw.decode()
            deadline = now - self.timeout(device_id)
            if last < deadline and device_id not in self.offline:
                self.offline.add(device_id)
                await self._open(device_id, "device_offline", value=None, threshold=None)
                await self.emit(
                    "device-status", _status(device_id, "offline", last), f"device:{device_id}"
                )
                await self.emit("device-status", _status(device_id, "offline", last), "system")
            elif last >= deadline and device_id in self.offline:
                self.offline.discard(device_id)
                await self._resolve_open(device_id, "device_offline", note="data returned")
                await self.emit(
                    "device-status", _status(device_id, "online", last), f"device:{device_id}"
                )
                await self.emit("device-status", _status(device_id, "online", last), "system")

    @_serialized
    async def escalate_due(self) -> list[Alert]:
        before = self.now() - timedelta(seconds=self.config.escalate_after_s)
        out = []
        for alert_id in await lifecycle.due_for_escalation(self.conn, before):
            alert = await lifecycle.escalate(
                self.conn, alert_id, f"unacknowledged for {self.config.escalate_after_s:g} s"
            )
            self.stats["escalated"] += 1
            logger.warning("alert escalated", alert=alert_id, device=alert.device_id)
            await self._changed(alert, "alert-escalated")
            out.append(alert)
        return out

    @_serialized
    async def resolve_quiet_anomalies(self) -> None:
        quiet_since = self.now() - timedelta(seconds=self.config.anomaly_quiet_s)
        for alert in await lifecycle.open_alerts(self.conn):
            if (
                alert.alert_type == "data_anomaly"
                and (alert.last_seen_at or alert.triggered_at) < quiet_since
            ):
                await self._resolve_open(
                    alert.device_id, "data_anomaly", note="no anomaly for a while"
                )

    # --- operators (the web role calls these) ---
    @_serialized
    async def acknowledge(self, alert_id: int, actor: str, note: str | None = None) -> Alert:
        alert = await lifecycle.acknowledge(self.conn, alert_id, actor, note)
        await self._changed(alert, "alert-acknowledged")
        return alert

    @_serialized
    async def resolve(self, alert_id: int, actor: str, note: str | None = None) -> Alert:
        alert = await lifecycle.resolve(self.conn, alert_id, actor, note)
        self.breaches.clear(alert.device_id, alert.alert_type)
        await self._changed(alert, "alert-resolved")
        return alert


def _parse_ts(value: Any) -> float | None:
    if not isinstance(value, str):
        return None
    try:
        return datetime.fromisoformat(value).timestamp()
    except ValueError:
        return None


def _status(device_id: str, status: str, last_seen: float) -> dict[str, Any]:
    return {
        "deviceId": device_id,
        "status": status,
        "lastSeen": iso_utc(last_seen),
    }
