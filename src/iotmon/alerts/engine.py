"""The alert engine: candidates from processing become alerts (duration condition,
deduplication, silences), devices that go quiet become ``device_offline`` alerts, channels that
stay at one state too long become ``state_duration`` alerts, unacknowledged alerts escalate, and
every change is stored, mirrored in ``alerts:active``, announced as a Socket.IO event and
notified. Time comes from an injectable clock.

State alerts (a profile channel's ``stateAlert``: value == state for at least forSeconds) are
watched here, not in processing, because they must fire with time alone: a door that opens and
then stays silent alerts forSeconds later. Each device's current run of equal values (its value
and when that run began) is read from ``sensor_readings``: once in full (at start, or when a
device gets a rule), then only the readings newer than the last one read, when
``devices:last_seen`` says there are some. Nothing lives only in memory: after a restart the
runs are read again from PostgreSQL, the open alerts (with the run each was raised for, in its
metadata) from ``alerts``, so an alert is neither lost nor raised twice for one run."""

from __future__ import annotations

import asyncio
import functools
import math
import time
from collections import deque
from collections.abc import Awaitable, Callable, Coroutine, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any, Concatenate, ParamSpec, TypeVar

import orjson
import psycopg
import redis.asyncio as aioredis
from redis.exceptions import RedisError

from iotmon import logging as log
from iotmon.alerts import flapping, lifecycle, rules
from iotmon.alerts.models import CANDIDATE_TYPES, SEVERITIES, Alert
from iotmon.alerts.notify import Notifier
from iotmon.cache import keys
from iotmon.devices.models import offline_timeout
from iotmon.metrics import REDIS_ERRORS
from iotmon.timefmt import iso_utc

logger = log.get(__name__)

# The Redis keys are defined once, with the ones processing writes.
ACTIVE_KEY = keys.ACTIVE_ALERTS
MIRROR_MARK_KEY = "alerts:active:synced"  # gone with Redis's data: the mirror needs rewriting
LAST_SEEN_KEY = keys.LAST_SEEN
SPANS_REFRESH_S = 10.0
SILENCES_REFRESH_S = 1.0
STATE_LOOKBACK_S = 2 * 86400.0  # a run is looked for this far back (forSeconds <= 1 day)
STATE_REREAD_S = 0.5  # a device's new readings are read at most this often
STATE_CHUNK = 500  # devices per query

# The run of equal values each device is in now: its latest reading and, when that is the
# rule's state, the last reading before it with another value and the first one after that
# (within the look-back; none: the run began before it, and its start is not known). Finding
# the start walks back through the run, so it is done only where it matters: a device at
# another value starts a new run with its next change anyway.
_STREAKS_SQL = """
SELECT d.device_id, last.value,
       CASE WHEN last.value = d.state THEN
           (SELECT min(r."timestamp") FROM sensor_readings r
             WHERE r.device_id = d.device_id AND r."timestamp" >= %(since)s
               AND r."timestamp" > coalesce(prev.ts, '-infinity'))
       ELSE last.ts END,
       last.ts,
       last.value <> d.state OR prev.ts IS NOT NULL
FROM unnest(%(ids)s::text[], %(states)s::float8[]) AS d(device_id, state)
CROSS JOIN LATERAL (
    SELECT r."timestamp" AS ts, r.value FROM sensor_readings r
    WHERE r.device_id = d.device_id AND r."timestamp" >= %(since)s
    ORDER BY r."timestamp" DESC LIMIT 1
) AS last
LEFT JOIN LATERAL (
    SELECT x."timestamp" AS ts FROM sensor_readings x
    WHERE last.value = d.state AND x.device_id = d.device_id
      AND x."timestamp" >= %(since)s AND x.value <> last.value
    ORDER BY x."timestamp" DESC LIMIT 1
) AS prev ON true
"""
# The readings after the last one read, per device, oldest first.
_NEWER_SQL = """
SELECT d.device_id, r."timestamp", r.value
FROM unnest(%(ids)s::text[], %(after)s::timestamptz[]) AS d(device_id, after)
CROSS JOIN LATERAL (
    SELECT r."timestamp", r.value FROM sensor_readings r
    WHERE r.device_id = d.device_id AND r."timestamp" > d.after
    ORDER BY r."timestamp" LIMIT 1000
) AS r
ORDER BY d.device_id, r."timestamp"
"""

Emit = Callable[[str, dict[str, Any], str], Awaitable[None]]  # (event, payload, room)
EmitMany = Callable[[list[tuple[str, dict[str, Any], str]]], Awaitable[None]]
# One (device, type)'s step in a batch: a run of breaching candidates (with their times) to
# open or count into its alert, or None: resolve its open alert.
_Step = list[tuple[dict[str, Any], float]] | None
# A stored change to publish: (alert, event or None, notify, started flapping, held).
_Effect = tuple[Alert, str | None, bool, bool, bool]

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
        emit_many: EmitMany | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        """``emit_many``: several events at once (one Redis round trip); default: ``emit``
        each."""
        self.conn = conn
        self.redis = redis
        self.notifier = notifier
        self.config = config
        self.emit = emit
        self.emit_many: EmitMany = emit_many or self._emit_each
        self.clock = clock
        self.breaches = rules.BreachTracker(config)
        self.flaps = flapping.FlapTracker(
            flapping.FlapConfig(config.flap_changes, config.flap_window_s, config.flap_quiet_s)
        )
        self.offline: set[str] = set()
        # When this engine began watching: a device is offline when nothing came from it for
        # its timeout *while watched*. After a restart that followed downtime, every device's
        # last reading is old; without this, each fired a false device_offline (and its
        # notifications) before its first new reading arrived.
        self.watching_since = -math.inf
        self._spans: dict[str, float] = {}
        self._timeouts: dict[str, float] = {}
        self._bad_devices: set[str] = set()  # logged once each
        self._mirror_stale = False  # a write to alerts:active failed: rewrite it
        self._spans_at = -1e18
        self._silences: list[tuple[str | None, str | None, datetime, datetime]] = []
        self._silences_at = -1e18
        self._lock = asyncio.Lock()
        # State alerts: the rules (by reading device id), each device's run of equal values
        # (None: no reading in the look-back), the open alerts with the run each was raised
        # for (None: not recorded), and the run last raised (or found raised) per device.
        self.state_rules: dict[str, rules.StateRule] = {}
        self.streaks: dict[str, rules.Streak | None] = {}
        self._state_open: dict[str, datetime | None] = {}
        self._state_done: dict[str, datetime] = {}
        self._state_read_at: dict[str, float] = {}  # engine clock of the last read
        self._rules_at = -1e18
        self._bad_profiles: set[str] = set()
        self._state_redis_logged = -1e18
        self.stats = {
            "candidates": 0,
            "invalid": 0,
            "triggered": 0,
            "resolved": 0,
            "escalated": 0,
            "flapStarted": 0,
            "flapSettled": 0,
            "notificationsHeld": 0,
        }

    async def _emit_each(self, events: list[tuple[str, dict[str, Any], str]]) -> None:
        for event, payload, room in events:
            await self.emit(event, payload, room)

    def now(self) -> datetime:
        return datetime.fromtimestamp(self.clock(), UTC)

    @_serialized
    async def start(self) -> None:
        """Pick up what is open (after a restart) and mirror it in Redis."""
        self.watching_since = self.clock()
        open_now = await lifecycle.open_alerts(self.conn)
        self.offline = {a.device_id for a in open_now if a.alert_type == "device_offline"}
        cur = await self.conn.execute(
            "SELECT device_id, metadata->>'stateSince' FROM alerts"
            " WHERE alert_type = %s AND status <> 'resolved'",
            (rules.STATE,),
        )
        self._state_open = {d: _parse_dt(since) for d, since in await cur.fetchall()}
        await self._restore_flaps()
        self.streaks.clear()
        self._state_done.clear()
        self._state_read_at.clear()
        self._rules_at = -1e18
        try:
            await self._mirror(open_now)
        except RedisError as exc:  # Redis away: start anyway, housekeeping resyncs it
            self._mirror_stale = True
            logger.warning("alerts:active not written at start", error=str(exc)[:200])

    async def _restore_flaps(self) -> None:
        """The flap tracker from PostgreSQL: the changes within the window (alert_transitions)
        and what is still flapping (its latest alert marked), so a restart neither forgets a
        flapping alert nor announces it again."""
        c = self.flaps.config
        self.flaps = flapping.FlapTracker(c)
        if not c.enabled:
            return
        since = datetime.fromtimestamp(self.clock() - c.window_s, UTC)
        times: dict[tuple[str, str], list[float]] = {}
        for device_id, kind, at in await lifecycle.state_changes(self.conn, since):
            times.setdefault((device_id, kind), []).append(at)
        marked = {
            (d, k): (last if last is not None else self.clock())
            for d, k, _, last in await lifecycle.flapping_now(self.conn)
        }
        for key in times.keys() | marked.keys():
            self.flaps.restore(key, times.get(key, []), marked.get(key))
        if marked:
            logger.info("flapping alerts restored", keys=len(marked))

    async def _flap(self, alert: Alert) -> Alert:
        """Count a state change of ``alert``'s (device, type); the alert marked flapping if
        this change started it (its notification then says so, see _changed)."""
        verdict = self.flaps.change((alert.device_id, alert.alert_type), self.clock())
        if verdict == "started" and not alert.flapping:
            alert = await lifecycle.set_flapping(self.conn, alert.id, True)
            await lifecycle.record_flap(self.conn, alert, started=True, at=self.now())
        return alert

    @_serialized
    async def settle_flapping(self) -> list[Alert]:
        """Settle what has been quiet for the quiet period: its latest alert unmarked, one
        notification with the state it settled in. Returns those alerts."""
        out = []
        now = self.clock()
        for device_id, kind in self.flaps.settled(now):
            alert = await lifecycle.latest(self.conn, device_id, kind)
            if alert is not None:
                alert = await lifecycle.set_flapping(self.conn, alert.id, False)
                await lifecycle.record_flap(self.conn, alert, started=False, at=self.now())
            self.flaps.settle((device_id, kind))
            if alert is None:
                continue
            self.stats["flapSettled"] += 1
            logger.info(
                "alert settled (no longer flapping)",
                alert=alert.id,
                device=device_id,
                type=kind,
                status=alert.status,
            )
            await self._changed(alert, "alert-updated", notify=False)
            await self.notifier.notify("alert-settled", alert)
            out.append(alert)
        self.flaps.forget_old(now)
        return out

    async def _mirror(self, open_now: Sequence[Alert]) -> None:
        pipe = self.redis.pipeline(transaction=True)
        pipe.delete(ACTIVE_KEY)
        for a in open_now:
            pipe.hset(ACTIVE_KEY, str(a.id), orjson.dumps(a.as_event()))
        pipe.set(MIRROR_MARK_KEY, b"1")
        await pipe.execute()
        self._mirror_stale = False

    @_serialized
    async def resync_active(self) -> bool:
        """Rewrite ``alerts:active`` from PostgreSQL when it may be wrong: a write to it failed,
        or Redis lost its data (the mark key is gone). Returns whether it rewrote."""
        if not self._mirror_stale and await self.redis.exists(MIRROR_MARK_KEY):
            return False
        await self._mirror(await lifecycle.open_alerts(self.conn))
        logger.info("alerts:active resynced from PostgreSQL")
        return True

    @_serialized
    async def open_by_severity(self) -> dict[str, int]:
        """Alerts not resolved (active or acknowledged), by severity."""
        cur = await self.conn.execute(
            "SELECT severity, count(*) FROM alerts WHERE status <> 'resolved' GROUP BY severity"
        )
        return {str(s): int(n) for s, n in await cur.fetchall()}

    async def _refresh_devices(self) -> None:
        """Normal spans (for severity) and offline timeouts, re-read every 10 s so edits to
        the devices table take effect without a restart."""
        if self.clock() - self._spans_at <= SPANS_REFRESH_S:
            return
        # The span is computed here, not in SQL: normal_max - normal_min of a bad row (-1e308,
        # 1e308) overflowed in PostgreSQL and failed the whole query, and the role with it.
        cur = await self.conn.execute(
            "SELECT device_id, normal_min, normal_max, offline_timeout_s FROM devices"
        )
        spans: dict[str, float] = {}
        timeouts: dict[str, float] = {}
        for device_id, lo, hi, timeout in await cur.fetchall():
            try:
                if lo is not None and hi is not None:
                    span = float(hi) - float(lo)
                    if not math.isfinite(span) or span <= 0:
                        raise ValueError(f"normal range [{lo}, {hi}] has no usable span")
                    spans[device_id] = span
                if timeout is not None:
                    t = float(timeout)
                    if not math.isfinite(t) or t <= 0:
                        raise ValueError(f"offline timeout {timeout} is not a duration")
                    timeouts[device_id] = t
            except (TypeError, ValueError) as exc:
                if device_id not in self._bad_devices:
                    self._bad_devices.add(device_id)
                    logger.error(
                        "device configuration skipped (fix it)", device=device_id, error=str(exc)
                    )
        self._spans, self._timeouts = spans, timeouts
        self._spans_at = self.clock()

    async def _silenced(self, device_id: str, alert_type: str) -> bool:
        """From the silences re-read at most once a second (a silence created anywhere takes
        effect within a second), not a query per alert."""
        mono = time.monotonic()
        if mono - self._silences_at >= SILENCES_REFRESH_S:
            self._silences = await lifecycle.active_silences(self.conn, self.now())
            self._silences_at = mono
        at = self.now()
        return any(
            (d is None or d == device_id) and (t is None or t == alert_type) and s <= at < e
            for d, t, s, e in self._silences
        )

    async def _span(self, device_id: str) -> float | None:
        await self._refresh_devices()
        return self._spans.get(device_id)

    def timeout(self, device_id: str) -> float:
        return offline_timeout(self._timeouts.get(device_id), self.config.offline_timeout_s)

    # --- publishing a change ---
    async def _changed(
        self, alert: Alert, event: str | None, *, notify: bool = True, flap: bool = False
    ) -> None:
        await self._publish([(alert, event, notify, flap, self._held(alert))])

    def _held(self, alert: Alert) -> bool:
        """Its notifications held now (decided when the change is made, not when it is
        published: a later change in the same batch may start the flapping)."""
        return alert.flapping or self.flaps.is_flapping((alert.device_id, alert.alert_type))

    async def _publish(self, changes: Sequence[_Effect]) -> None:
        """Stored changes, in order, to the Redis mirror (one pipeline), Socket.IO (one
        batch) and the notifier."""
        if not changes:
            return
        # The Redis mirror is best effort: the alert is in PostgreSQL, and resync_active puts
        # the mirror right again once Redis is back (a restart used to crash the role here).
        try:
            pipe = self.redis.pipeline(transaction=False)
            for alert, *_ in changes:
                if alert.status == "resolved":
                    pipe.hdel(ACTIVE_KEY, str(alert.id))
                else:
                    pipe.hset(ACTIVE_KEY, str(alert.id), orjson.dumps(alert.as_event()))
            await pipe.execute()
        except RedisError as exc:
            REDIS_ERRORS.labels("alerts").inc()
            self._mirror_stale = True
            logger.warning("alerts:active not updated; resynced later", error=str(exc)[:200])
        events: list[tuple[str, dict[str, Any], str]] = []
        for alert, event, *_ in changes:
            if event is not None:
                payload = alert.as_event()
                events.append((event, payload, "alerts"))
                events.append((event, payload, f"device:{alert.device_id}"))
        await self.emit_many(events)
        for alert, event, notify, flap, held in changes:
            if event is not None:
                await self._notify(alert, event, notify=notify, flap=flap, held=held)

    async def _notify(
        self, alert: Alert, event: str, *, notify: bool, flap: bool, held: bool
    ) -> None:
        # Notified: a new alert, an escalation, a resolution, and a rise to critical (an
        # alert that crept from medium to critical is news to whoever is on call).
        # While it flaps, its notifications are held: one said it started (``flap``, this
        # change started it), one will say when it settled (settle_flapping).
        if flap:
            self.stats["flapStarted"] += 1
            logger.warning(
                "alert flapping: notifications held until it settles",
                alert=alert.id,
                device=alert.device_id,
                type=alert.alert_type,
            )
            await self.notifier.notify("alert-flapping", alert)
            return
        if notify and (
            event in ("alert-triggered", "alert-escalated", "alert-resolved")
            or (event == "alert-updated" and alert.severity == "critical")
        ):
            if held:
                self.stats["notificationsHeld"] += 1
                return
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
        severity: str | None = None,
        repeats: int = 1,
        last: tuple[float | None, datetime] | None = None,
        message: str | None = None,
        metadata: dict[str, Any] | None = None,
    ) -> tuple[Alert, bool]:
        at = at or self.now()
        silenced = await self._silenced(device_id, alert_type)
        alert, done = await lifecycle.open_or_update(
            self.conn,
            device_id=device_id,
            alert_type=alert_type,
            message=message
            or rules.message(
                alert_type, device_id, value, threshold, unit, self.timeout(device_id)
            ),
            severity=severity
            or rules.severity(alert_type, value, threshold, await self._span(device_id), zscore),
            value=value,
            threshold=threshold,
            at=at,
            silenced=silenced,
            repeats=repeats,
            last_value=last[0] if last else None,
            last_at=last[1] if last else None,
            metadata=metadata,
            flapping=self.flaps.is_flapping((device_id, alert_type)),
            changed_at=self.now(),
        )
        created = done == "created"
        started = False
        if created:
            flagged = alert.flapping
            alert = await self._flap(alert)
            started = alert.flapping and not flagged
            self.stats["triggered"] += 1
            logger.info(
                "alert triggered",
                alert=alert.id,
                device=device_id,
                type=alert_type,
                severity=alert.severity,
                silenced=silenced,
            )
        # A severity that rises on an open alert is news to whoever shows it (the alert
        # list, a toast): "alert-updated". Repeats that change nothing but counts are not.
        event = {"created": "alert-triggered", "raised": "alert-updated"}.get(done)
        await self._changed(alert, event, flap=started)
        return alert, created

    async def _resolve_open(
        self, device_id: str, alert_type: str, actor: str = "system", note: str | None = None
    ) -> Alert | None:
        alert = await lifecycle.find_open(self.conn, device_id, alert_type)
        if alert is None:
            return None
        resolved = await lifecycle.resolve(self.conn, alert.id, actor, note, at=self.now())
        flagged = resolved.flapping
        resolved = await self._flap(resolved)
        self.stats["resolved"] += 1
        logger.info("alert resolved", alert=alert.id, device=device_id, type=alert_type, by=actor)
        await self._changed(resolved, "alert-resolved", flap=resolved.flapping and not flagged)
        return resolved

    # --- inputs ---
    @_serialized
    async def handle(self, candidate: dict[str, Any]) -> Alert | None:
        """One candidate from processing (see stats/processor.py)."""
        alerts = await self._handle_many([candidate])
        return alerts[0] if alerts else None

    @_serialized
    async def handle_many(self, candidates: Sequence[Any]) -> list[Alert]:
        """Candidates in the order processing sent them; returns the alerts opened, counted
        into or resolved. The repeats of one (device, type) within a batch are counted into its
        alert in one round trip; a ``clear`` ends the run before it. Malformed candidates are
        logged and skipped."""
        return await self._handle_many(candidates)

    async def _handle_many(self, candidates: Sequence[Any]) -> list[Alert]:
        """The batch in one transaction and a few round trips. The candidates are first
        turned into each (device, type)'s sequence of steps (open a run of breaches, resolve)
        in order; then step 1 of every (device, type) is done in one statement per kind
        (one upsert over arrays, one resolution over arrays), then step 2 (a clear inside
        the batch splits a run), and so on. (Device, type)s share nothing in the database, so
        this is what one at a time did. Redis, events and notifications follow the commit, in
        the order one at a time had them; a failed batch is rolled back whole, with the
        trackers it moved, and can be handed again."""
        runs: dict[tuple[str, str], list[tuple[dict[str, Any], float]]] = {}
        steps: dict[tuple[str, str], list[_Step]] = {}
        order: list[tuple[tuple[str, str], int]] = []  # (key, step index): the output order

        def step(key: tuple[str, str], what: _Step) -> None:
            seq = steps.setdefault(key, [])
            order.append((key, len(seq)))
            seq.append(what)

        undo = _Undo(self, candidates)
        for candidate in candidates:
            if not _valid(candidate):
                self.stats["invalid"] += 1
                logger.warning("malformed alert candidate skipped", candidate=repr(candidate)[:200])
                continue
            self.stats["candidates"] += 1
            key = (candidate["deviceId"], candidate["type"])
            if candidate.get("state") == "clear":
                if key in runs:
                    step(key, runs.pop(key))
                self.breaches.clear(*key)
                step(key, None)
                continue
            t = _parse_ts(candidate.get("timestamp")) or self.clock()
            if self.breaches.observe(*key, t):
                runs.setdefault(key, []).append((candidate, t))
        for key, run in runs.items():
            step(key, run)
        if not order:
            return []
        done: dict[tuple[tuple[str, str], int], Alert | None] = {}
        effects: list[tuple[tuple[tuple[str, str], int], _Effect]] = []
        try:
            await self._refresh_devices()
            async with self.conn.transaction():
                rounds = max(len(seq) for seq in steps.values())
                for i in range(rounds):
                    part = {key: seq[i] for key, seq in steps.items() if i < len(seq)}
                    await self._round(i, part, done, effects)
        except BaseException:
            undo.restore()
            raise
        at = {k: n for n, k in enumerate(order)}
        await self._publish([e for _, e in sorted(effects, key=lambda e: at[e[0]])])
        return [a for k in order if (a := done.get(k)) is not None]

    async def _round(
        self,
        i: int,
        part: dict[tuple[str, str], _Step],
        done: dict[tuple[tuple[str, str], int], Alert | None],
        effects: list[tuple[tuple[tuple[str, str], int], _Effect]],
    ) -> None:
        """Step ``i`` of each (device, type) in ``part``: its runs opened in one statement,
        its clears resolved in another."""
        now = self.now()
        openings = []
        for key, run in part.items():
            if run is None:
                continue
            device_id, kind = key
            span = self._spans.get(device_id)
            worst = max(
                (
                    rules.severity(kind, c.get("value"), c.get("threshold"), span, c.get("zscore"))
                    for c, _ in run
                ),
                key=SEVERITIES.index,
            )
            first, t0 = run[0]
            latest, t1 = run[-1]
            openings.append(
                lifecycle.Opening(
                    device_id=device_id,
                    alert_type=kind,
                    message=rules.message(
                        kind,
                        device_id,
                        first.get("value"),
                        first.get("threshold"),
                        first.get("unit", ""),
                        self.timeout(device_id),
                    ),
                    severity=worst,
                    value=first.get("value"),
                    threshold=first.get("threshold"),
                    at=datetime.fromtimestamp(t0, UTC),
                    silenced=await self._silenced(device_id, kind),
                    repeats=len(run),
                    last_value=latest.get("value"),
                    last_at=datetime.fromtimestamp(t1, UTC),
                    flapping=self.flaps.is_flapping(key),
                )
            )
        clears = [key for key, run in part.items() if run is None]
        opened = await lifecycle.open_many(self.conn, openings, changed_at=now)
        resolved = await lifecycle.resolve_open_many(
            self.conn, clears, "system", "back inside the normal range", at=now
        )
        for key, (alert, how) in opened.items():
            alert, effect = await self._opened(alert, how)
            done[(key, i)] = alert
            effects.append(((key, i), effect))
        for key in clears:
            done[(key, i)] = None
            if (found := resolved.get(key)) is not None:
                alert, effect = await self._resolved(found, "system")
                done[(key, i)] = alert
                effects.append(((key, i), effect))

    async def _opened(self, alert: Alert, how: lifecycle.Opened) -> tuple[Alert, _Effect]:
        """After an alert was opened or counted into: flapping counted (when opened), logged;
        the change to publish."""
        started = False
        if how == "created":
            flagged = alert.flapping
            alert = await self._flap(alert)
            started = alert.flapping and not flagged
            self.stats["triggered"] += 1
            logger.info(
                "alert triggered",
                alert=alert.id,
                device=alert.device_id,
                type=alert.alert_type,
                severity=alert.severity,
                silenced=alert.silenced,
            )
        # A severity that rises on an open alert is news to whoever shows it (the alert
        # list, a toast): "alert-updated". Repeats that change nothing but counts are not.
        event = {"created": "alert-triggered", "raised": "alert-updated"}.get(how)
        return alert, (alert, event, True, started, self._held(alert))

    async def _resolved(self, resolved: Alert, actor: str) -> tuple[Alert, _Effect]:
        flagged = resolved.flapping
        resolved = await self._flap(resolved)
        self.stats["resolved"] += 1
        logger.info(
            "alert resolved",
            alert=resolved.id,
            device=resolved.device_id,
            type=resolved.alert_type,
            by=actor,
        )
        started = resolved.flapping and not flagged
        return resolved, (resolved, "alert-resolved", True, started, self._held(resolved))

    @_serialized
    async def check_offline(self) -> None:
        """Devices silent past the timeout go offline; devices heard again come back."""
        await self._refresh_devices()
        now = self.clock()
        # Only devices quiet for longer than the shortest timeout, and those now offline, are
        # read: the poll costs O(quiet devices), not O(all devices), five times a second.
        shortest = min(self._timeouts.values(), default=self.config.offline_timeout_s)
        shortest = min(shortest, self.config.offline_timeout_s)
        quiet: list[tuple[bytes, float]] = await self.redis.zrangebyscore(  # type: ignore[assignment]
            LAST_SEEN_KEY, "-inf", f"({now - shortest}", withscores=True
        )
        seen = {raw.decode(): last for raw, last in quiet}
        back = sorted(self.offline - seen.keys())
        if back:
            scores = await self.redis.zmscore(LAST_SEEN_KEY, back)
            seen.update((d, score) for d, score in zip(back, scores, strict=True) if score)
        for device_id, last in seen.items():
            deadline = now - self.timeout(device_id)
            if max(last, self.watching_since) < deadline and device_id not in self.offline:
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

    # --- state alerts ---
    async def _refresh_state_rules(self) -> None:
        """The profiles' state rules and the devices' own, re-read every 10 s (a profile
        edited, a device given a profile or its own stateAlert take effect without a
        restart)."""
        if self.clock() - self._rules_at <= SPANS_REFRESH_S:
            return
        cur = await self.conn.execute("SELECT name, channels FROM device_profiles")
        profiles = {name: channels for name, channels in await cur.fetchall()}
        cur = await self.conn.execute(
            "SELECT device_id, profile FROM devices WHERE profile IS NOT NULL"
        )
        devices = await cur.fetchall()
        cur = await self.conn.execute(
            "SELECT device_id, state_alert, device_type, unit FROM devices"
            " WHERE state_alert IS NOT NULL"
        )
        found, bad = rules.state_rules(profiles, devices, await cur.fetchall())
        for name, why in bad.items():
            if name not in self._bad_profiles:
                self._bad_profiles.add(name)
                logger.error(
                    "stored state alert is invalid: no state alerts from it", source=name, error=why
                )
        # A device whose rule is gone or alerts on another state now is read in full again (its
        # run's start was only looked for when it was at the old rule's state).
        changed = {
            d for d, rule in self.state_rules.items() if d in found and found[d].state != rule.state
        }
        self.state_rules = found
        for gone in (self.streaks.keys() - found.keys()) | changed:
            self.streaks.pop(gone, None)
            self._state_read_at.pop(gone, None)
            self._state_done.pop(gone, None)
        self._rules_at = self.clock()

    async def _read_streaks(self) -> None:
        """Bring each ruled device's run up to date: read in full the devices never read, and
        the readings newer than the last one read for those ``devices:last_seen`` says have
        some. With Redis away, nothing new is read (the runs known go on being timed)."""
        ids = list(self.state_rules)
        unknown = [d for d in ids if d not in self.streaks]
        newer: list[str] = []
        known = [d for d in ids if d in self.streaks]
        if known:
            try:
                scores = await self.redis.zmscore(LAST_SEEN_KEY, known)
            except RedisError as exc:
                REDIS_ERRORS.labels("alerts").inc()
                scores = [None] * len(known)
                mono = time.monotonic()
                if mono - self._state_redis_logged >= 10:
                    self._state_redis_logged = mono
                    logger.warning(
                        "state alerts: no new readings seen (Redis)", error=str(exc)[:200]
                    )
            now = self.clock()
            for device_id, score in zip(known, scores, strict=True):
                streak = self.streaks[device_id]
                last = streak.last.timestamp() if streak is not None else -math.inf
                if (
                    score is not None
                    and score > last + 1e-3
                    and abs(now - self._state_read_at.get(device_id, -math.inf)) >= STATE_REREAD_S
                ):
                    newer.append(device_id)
        lookback = datetime.fromtimestamp(self.clock() - STATE_LOOKBACK_S, UTC)
        for i in range(0, len(unknown), STATE_CHUNK):
            part = unknown[i : i + STATE_CHUNK]
            states = [self.state_rules[d].state for d in part]
            cur = await self.conn.execute(
                _STREAKS_SQL, {"ids": part, "states": states, "since": lookback}
            )
            found = {
                d: rules.Streak(v, since, last, start_known)
                for d, v, since, last, start_known in await cur.fetchall()
            }
            for device_id in part:
                self.streaks[device_id] = found.get(device_id)
        now = self.clock()
        for i in range(0, len(newer), STATE_CHUNK):
            part = newer[i : i + STATE_CHUNK]
            after = []
            for device_id in part:
                streak = self.streaks[device_id]
                after.append(streak.last if streak is not None else lookback)
                self._state_read_at[device_id] = now
            cur = await self.conn.execute(_NEWER_SQL, {"ids": part, "after": after})
            for device_id, at, value in await cur.fetchall():
                streak = self.streaks.get(device_id)
                self.streaks[device_id] = (
                    rules.Streak(value, at, at) if streak is None else streak.extend(at, value)
                )

    @_serialized
    async def check_states(self) -> None:
        """Open a ``state_duration`` alert for each device in its rule's state for the rule's
        time (at most once per run of the state, an operator's resolution included); resolve
        it when the value changes (or the state came back after a change between two looks,
        or the rule is gone)."""
        await self._refresh_state_rules()
        if not self.state_rules and not self._state_open:
            return
        await self._read_streaks()
        now = self.clock()
        for device_id in sorted(self.state_rules.keys() | self._state_open.keys()):
            rule = self.state_rules.get(device_id)
            streak = self.streaks.get(device_id)
            verdict = rules.state_verdict(rule, streak, now)
            if device_id in self._state_open:
                raised_for = self._state_open[device_id]
                if verdict == "no_rule":
                    note = "state rule removed"
                elif verdict == "out" and streak is not None:
                    note = f"state is now {streak.value:g}"
                elif (
                    streak is not None
                    and streak.known
                    and raised_for is not None
                    and streak.since > raised_for
                ):
                    note = "the state changed and came back: a new run"
                else:
                    continue
                await self._resolve_open(device_id, rules.STATE, note=note)
                del self._state_open[device_id]  # after: a failed write is tried again
            if verdict != "due":
                continue
            if rule is None or streak is None:  # "due" has both
                continue
            if self._state_done.get(device_id) == streak.since:
                continue
            if await self._run_alerted(device_id, streak.since):
                self._state_done[device_id] = streak.since
                continue  # raised before a restart, and resolved by an operator since
            await self._open(
                device_id,
                rules.STATE,
                value=streak.value,
                threshold=None,
                at=streak.since + timedelta(seconds=rule.for_s),
                severity=rule.severity,
                message=rule.message(),
                metadata={
                    "stateSince": iso_utc(streak.since, "microseconds"),
                    "state": rule.state,
                    "forSeconds": rule.for_s,
                },
            )
            self._state_done[device_id] = streak.since
            self._state_open[device_id] = streak.since

    async def _run_alerted(self, device_id: str, since: datetime) -> bool:
        cur = await self.conn.execute(
            "SELECT 1 FROM alerts WHERE device_id = %s AND alert_type = %s"
            " AND metadata->>'stateSince' = %s LIMIT 1",
            (device_id, rules.STATE, iso_utc(since, "microseconds")),
        )
        return await cur.fetchone() is not None

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
        if alert.alert_type == rules.STATE:  # not raised again for the same run (_state_done)
            self._state_open.pop(alert.device_id, None)
        await self._changed(alert, "alert-resolved")
        return alert


class _Undo:
    """What a batch moves in memory (the pending and flap trackers of its (device, type)s,
    the counters), put back if the batch fails: handed again, it counts as the first time."""

    def __init__(self, engine: AlertEngine, candidates: Sequence[Any]) -> None:
        self.engine = engine
        self.keys = {(c["deviceId"], c["type"]) for c in candidates if _valid(c)}
        b, f = engine.breaches._since, engine.flaps
        self.since = {k: b.get(k) for k in self.keys}
        self.changes = {
            k: deque(v) if (v := f._changes.get(k)) is not None else None for k in self.keys
        }
        self.flapping = {k: f._flapping.get(k) for k in self.keys}
        self.stats = dict(engine.stats)

    def restore(self) -> None:
        b, f = self.engine.breaches._since, self.engine.flaps
        for k in self.keys:
            _put(b, k, self.since[k])
            _put(f._changes, k, self.changes[k])
            _put(f._flapping, k, self.flapping[k])
        self.engine.stats.update(self.stats)


def _put(d: dict[Any, Any], key: Any, value: Any) -> None:
    if value is None:
        d.pop(key, None)
    else:
        d[key] = value


def _valid(candidate: Any) -> bool:
    return (
        isinstance(candidate, dict)
        and isinstance(candidate.get("deviceId"), str)
        and candidate.get("type") in CANDIDATE_TYPES
    )


def _parse_ts(value: Any) -> float | None:
    if not isinstance(value, str):
        return None
    try:
        return datetime.fromisoformat(value).timestamp()
    except ValueError:
        return None


def _parse_dt(value: str | None) -> datetime | None:
    try:
        return datetime.fromisoformat(value) if value else None
    except ValueError:
        return None


def _status(device_id: str, status: str, last_seen: float) -> dict[str, Any]:
    return {
        "deviceId": device_id,
        "status": status,
        "lastSeen": iso_utc(last_seen),
    }
