"""Alerts role: candidates from ``alerts`` -> the alert engine; offline detection every
200 ms; state alerts (profiles' ``stateAlert``) every 500 ms; escalation and quiet-anomaly
resolution every few seconds; events to Socket.IO rooms through python-socketio's Redis manager
(write-only: the web role's server delivers them)."""

from __future__ import annotations

import asyncio
import contextlib
import time
from typing import Any

import psycopg
import redis
import redis.asyncio as aioredis
from fastapi import APIRouter

from iotmon import logging as log
from iotmon.alerts.candidates import decode_many as candidates_decode_many
from iotmon.alerts.config import notify_config, rule_config
from iotmon.alerts.engine import AlertEngine
from iotmon.alerts.models import SEVERITIES
from iotmon.alerts.notify import Notifier
from iotmon.bus import BusError, Message, TopicPartition, consume_available
from iotmon.bus.pipeline import (
    DeadLetters,
    Reasons,
    Rejection,
    decode_batch,
    isolate_async,
    refused_by_database,
)
from iotmon.metrics import ALERTS_OPEN, BATCH_MESSAGES, BATCH_SECONDS
from iotmon.realtime.publish import AsyncLivePublisher, Encoder
from iotmon.roles import ROLES
from iotmon.roles.runtime import Services

logger = log.get(__name__)


def _refused(exc: BaseException) -> bool:
    """A candidate's own fault (data the database refuses, or a value the engine cannot
    take), as opposed to the database being away (retried)."""
    if isinstance(exc, psycopg.OperationalError | psycopg.InterfaceError | OSError):
        return False
    return refused_by_database(exc) or isinstance(exc, KeyError | AttributeError | ArithmeticError)


OFFLINE_POLL_S = 0.2
STATE_POLL_S = 0.5
HOUSEKEEPING_S = 5.0
# Candidates per batch: the engine handles a batch in one transaction and a few round trips
# whatever its size, so a role that fell behind catches up in large ones.
BATCH_MAX = 2000
BATCH_SIZE = BATCH_MESSAGES.labels("alerts")
BATCH_TOOK = BATCH_SECONDS.labels("alerts")


class AlertsRole:
    name = "alerts"

    def __init__(self, services: Services) -> None:
        self.services = services
        self.endpoints = ROLES["alerts"].endpoints(services.settings)
        self.engine: AlertEngine | None = None
        self.dead: DeadLetters | None = None
        self._stop = asyncio.Event()
        self._conn_lock = asyncio.Lock()

    async def run(self, stop: asyncio.Event) -> None:
        s, svc = self.services.settings, self.services
        assert svc.database_url is not None
        assert svc.redis_url is not None
        self._stop = stop
        conn = await self._connect()
        if conn is None:
            return
        r = aioredis.Redis.from_url(svc.redis_url)
        live = AsyncLivePublisher(
            r, Encoder(replay_size=s.live_replay_size, replay_ttl_s=s.live_replay_ttl_s)
        )

        async def emit(event: str, payload: dict[str, Any], room: str) -> None:
            try:
                await live.emit(event, payload, room)
            except Exception as exc:  # live events are best effort; the alert is stored
                logger.warning("socket.io emit failed", socket_event=event, error=str(exc))

        async def emit_many(events: list[tuple[str, dict[str, Any], str]]) -> None:
            """A batch's events in one pipeline (the first alone: it loads the script)."""
            if not events:
                return
            try:
                await live.emit(*events[0])
                if len(events) > 1:
                    pipe = r.pipeline(transaction=False)
                    for event, payload, room in events[1:]:
                        args = live.encoder.args(event, payload, room)
                        pipe.execute_command("EVALSHA", *args)
                    await pipe.execute()
            except redis.exceptions.NoScriptError:  # flushed meanwhile: one at a time
                for event, payload, room in events[1:]:
                    await emit(event, payload, room)
            except Exception as exc:  # live events are best effort; the alerts are stored
                logger.warning("socket.io emit failed", events=len(events), error=str(exc))

        notifier = Notifier(notify_config(s))
        engine = self.engine = AlertEngine(
            conn=conn,
            redis=r,
            notifier=notifier,
            config=rule_config(s),
            emit=emit,
            emit_many=emit_many,
        )
        if not await self._start(engine, stop):
            await r.aclose()
            return
        ends = self.endpoints
        assert ends.dlq is not None
        # candidates are few and small: 16 MiB of read-ahead is minutes of them
        consumer = svc.bus.consumer(ends.group, name="iotmon-alerts", prefetch_kbytes=16_384)
        consumer.subscribe([ends.topic])
        dead = self.dead = DeadLetters(
            svc.bus.producer(name="iotmon-alerts-dlq"), ends.dlq, ends.group
        )
        tasks = [
            asyncio.create_task(self._offline(stop)),
            asyncio.create_task(self._states(stop)),
            asyncio.create_task(self._housekeeping(stop)),
        ]
        try:
            while not stop.is_set():
                msgs = await asyncio.to_thread(consume_available, consumer, BATCH_MAX, 0.2)
                if not msgs:
                    continue
                started = time.perf_counter()
                candidates, rejected = decode_batch(
                    candidates_decode_many, [m.value() or b"" for m in msgs]
                )
                bad = {i for i, _ in rejected}
                taken = [m for i, m in enumerate(msgs) if i not in bad]
                handled = await self._handle(
                    engine, list(zip(taken, candidates, strict=True)), stop
                )
                if handled is None:  # stopped with the database away: leave them uncommitted
                    continue
                if not await self._dead_letter(
                    dead, [(msgs[i], rej) for i, rej in rejected] + handled, stop
                ):
                    continue  # stopped with the bus away: not committed, seen again
                last: dict[int, int] = {}
                for m in msgs:
                    last[m.partition()] = m.offset()  # type: ignore[index,assignment]
                consumer.commit([TopicPartition(ends.topic, p, o + 1) for p, o in last.items()])
                BATCH_SIZE.observe(len(msgs))
                BATCH_TOOK.observe(time.perf_counter() - started)
        finally:
            for t in tasks:
                t.cancel()
            await asyncio.to_thread(consumer.close)
            await asyncio.to_thread(dead.close)
            await notifier.close()
            await r.aclose()
            await engine.conn.close()

    async def _handle(
        self,
        engine: AlertEngine,
        batch: list[tuple[Message, dict[str, Any]]],
        stop: asyncio.Event,
    ) -> list[tuple[Message, Rejection]] | None:
        """Hand the batch to the engine. While the database is away, reconnect and hand it
        again (at least once: a repeat only adds to an alert's count); None if stopped
        meanwhile. A candidate the engine or the database refuses on its own is found by
        halving and returned for the DLQ: it cannot block the topic."""
        backoff = 0.5
        while not stop.is_set():
            try:
                result = await isolate_async(
                    lambda part: engine.handle_many([c for _, c in part]),
                    batch,
                    refuses=_refused,
                )
            except (psycopg.OperationalError, psycopg.InterfaceError, OSError) as exc:
                logger.error("alerts database unavailable, retrying", error=str(exc))
                await asyncio.sleep(backoff)
                backoff = min(backoff * 2, 10)
                await self._reconnect(engine)
                continue
            refused = []
            for (m, c), error in result.refused:
                detail = f"the alert engine refused it: {type(error).__name__}: {error}"[:500]
                logger.error("alert candidate refused", error=detail, candidate=repr(c)[:200])
                refused.append((m, Rejection(Reasons.WRITE_REJECTED, detail)))
            return refused
        return None

    @staticmethod
    async def _dead_letter(
        dead: DeadLetters, rejects: list[tuple[Message, Rejection]], stop: asyncio.Event
    ) -> bool:
        """Send to the DLQ before the batch commits; while the bus is away, keep trying."""
        backoff = 0.5
        while not stop.is_set():
            try:
                await asyncio.to_thread(dead.send_all, rejects)
                return True
            except (BusError, BufferError) as exc:
                logger.error("dead-letter topic unavailable, retrying", error=str(exc))
                await asyncio.sleep(backoff)
                backoff = min(backoff * 2, 10)
        return False

    async def _connect(self) -> psycopg.AsyncConnection[Any] | None:
        """A connection to PostgreSQL, waiting (with back-off) while it is away; None if
        stopped meanwhile. The role starts, and keeps running, through an outage."""
        url = self.services.database_url
        assert url is not None
        backoff = 0.5
        while not self._stop.is_set():
            try:
                return await psycopg.AsyncConnection.connect(
                    url, autocommit=True, application_name="iotmon-alerts", connect_timeout=5
                )
            except (psycopg.OperationalError, OSError) as exc:
                logger.error("alerts database unavailable, retrying", error=str(exc)[:300])
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._stop.wait(), backoff)
            backoff = min(backoff * 2, 10)
        return None

    async def _start(self, engine: AlertEngine, stop: asyncio.Event) -> bool:
        """Load the open alerts; while the database is away, reconnect and try again."""
        while not stop.is_set():
            try:
                await engine.start()
                return True
            except (psycopg.OperationalError, psycopg.InterfaceError, OSError) as exc:
                logger.error("alerts start: database unavailable, retrying", error=str(exc))
                await self._reconnect(engine)
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(stop.wait(), 1.0)
        return False

    async def _reconnect(self, engine: AlertEngine) -> None:
        """Replace the engine's connection if it is broken (one task at a time: the offline
        check, housekeeping and the candidate loop all notice the same outage)."""
        async with self._conn_lock:
            conn = engine.conn
            if not (conn.closed or conn.broken):
                try:
                    await conn.execute("SELECT 1")
                    return
                except (psycopg.Error, OSError):
                    pass
            with contextlib.suppress(psycopg.Error, OSError):
                await conn.close()
            fresh = await self._connect()
            if fresh is not None:
                engine.conn = fresh
                logger.info("alerts database reconnected")

    async def _offline(self, stop: asyncio.Event) -> None:
        assert self.engine is not None
        logged_at = -1e9
        while not stop.is_set():
            try:
                await self.engine.check_offline()
            except (psycopg.OperationalError, psycopg.InterfaceError) as exc:
                logger.error("offline check: database unavailable", error=str(exc)[:300])
                await self._reconnect(self.engine)
            except Exception as exc:  # Redis away, most likely: said once every 10 s
                now = time.monotonic()
                if now - logged_at >= 10:
                    logged_at = now
                    logger.error("offline check failed", error=str(exc)[:300])
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), OFFLINE_POLL_S)

    async def _states(self, stop: asyncio.Event) -> None:
        """State alerts with time: a device silent in its alerting state still alerts."""
        assert self.engine is not None
        logged_at = -1e9
        while not stop.is_set():
            try:
                await self.engine.check_states()
            except (psycopg.OperationalError, psycopg.InterfaceError) as exc:
                logger.error("state alerts: database unavailable", error=str(exc)[:300])
                await self._reconnect(self.engine)
            except Exception as exc:  # said once every 10 s
                now = time.monotonic()
                if now - logged_at >= 10:
                    logged_at = now
                    logger.error("state alert check failed", error=str(exc)[:300])
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), STATE_POLL_S)

    async def _housekeeping(self, stop: asyncio.Event) -> None:
        assert self.engine is not None
        while not stop.is_set():
            try:
                await self.engine.escalate_due()
                await self.engine.resolve_quiet_anomalies()
                await self.engine.settle_flapping()
                await self.engine.resync_active()
                by_severity = await self.engine.open_by_severity()
                for severity in SEVERITIES:
                    ALERTS_OPEN.labels(severity).set(by_severity.get(severity, 0))
            except (psycopg.OperationalError, psycopg.InterfaceError) as exc:
                logger.error("alert housekeeping: database unavailable", error=str(exc)[:300])
                await self._reconnect(self.engine)
            except Exception as exc:
                logger.error("alert housekeeping failed", error=str(exc))
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), HOUSEKEEPING_S)

    def status(self) -> dict[str, Any]:
        if self.engine is None:
            return {"started": False}
        dead = self.dead.sent if self.dead is not None else 0
        return {
            **self.engine.stats,
            "deadLettered": dead,
            "offline": sorted(self.engine.offline),
            "stateRules": len(self.engine.state_rules),
            "flapping": [f"{d} {t}" for d, t in self.engine.flaps.flapping()],
        }

    def routers(self) -> list[APIRouter]:
        return []


def build(services: Services) -> AlertsRole:
    return AlertsRole(services)
