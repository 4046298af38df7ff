"""Faults under flow: the simulator at ~1,000 readings/s (500 devices, rate 4.5), every role
its own process on a private Kafka, PostgreSQL and Redis; one fault per test:

- PostgreSQL stopped, then started again;
- Redis stopped, then started again (it keeps nothing: `save ""`, no AOF);
- the Kafka broker killed with SIGKILL, then started again;
- the processing role killed with SIGKILL, then started again;
- the alerts role killed with SIGKILL, then started again.

Afterwards, with nobody having restarted a role by hand (same PIDs, except the one killed on
purpose): readings stored exactly once (rows = ingestion's committed offsets - DLQ, in one
snapshot; no (device, timestamp) twice; ingestion reaches the topic's end), live statistics
equal a recomputation from PostgreSQL (at rest: the simulator is stopped for the check), at
most one open alert per device and type, PostgreSQL's open alerts exactly the Redis hash
``alerts:active``, no device_offline alert left open for a device that reports again,
``/api/health`` of the web role 503 during a PostgreSQL or Redis outage and 200 after (the
roles' own /health for Kafka, which the web role does not use), and a Socket.IO client that
was away during the fault reconnected with its last event id and received what it missed
(what a client connected throughout received meanwhile).
"""

from __future__ import annotations

import asyncio
import itertools
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import timedelta

import pytest

from tests.reliability.system import (
    LiveClient,
    PrivateInfra,
    System,
    alert_problems,
    health_code,
    login,
    start_scenario,
    stats_mismatches,
)

pytestmark = [pytest.mark.reliability, pytest.mark.timeout(420)]

DEVICES = 500
RATE = "4.5"  # 500 devices of the five kinds (1-5 s intervals) x 4.5 = ~1,030 readings/s
ROOMS = ["device-004", "device-0010"]  # ~1 sensor-data a second each: the replay keeps 100
SCENARIO_DEVICE = "device-001"  # seeded with thresholds: high for the whole test
QUIET_DEVICE = "device-0007"  # silent for the whole test: its device_offline stays open
QUIET_TIMEOUT_S = 3.0  # its own offline timeout (the others keep the default 30 s)
SEQ_START = 10_000_000  # as after months of running: live event ids are far from 0
ROLES = ("web", "ingestion", "processing", "alerts")
OUTAGE_S = 6.0


@pytest.fixture(scope="module")
def system(
    private_infra: PrivateInfra, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[System]:
    s = System(
        private_infra,
        tmp_path_factory.mktemp("faults"),
        IOTMON_SIMULATOR_DEVICES=str(DEVICES),
        IOTMON_SIMULATOR_RATE=RATE,
        IOTMON_STATS_INTERVAL_S="0",  # statistics written every flush: compared at rest
    )
    s.prepare()
    s.query(  # the quiet device, registered with a short offline timeout
        "INSERT INTO devices (device_id, device_type, location, unit, normal_min, normal_max,"
        " alert_min, alert_max, interval_ms, offline_timeout_s)"
        " VALUES (%s, 'pressure', 'bench', 'psi', 10, 50, 5, 55, 3000, %s) RETURNING 1",
        (QUIET_DEVICE, QUIET_TIMEOUT_S),
    )
    r = s.redis()
    try:
        r.set("live:seq", SEQ_START)
    finally:
        r.close()
    for role in ROLES:
        s.start(role)
    try:
        s.wait_healthy()
        yield s
    finally:
        problems = s.stop_all()
        s.close()
        assert not problems, "\n".join(problems)


# --- async waits (the Socket.IO clients need the loop: blocking work goes to threads) -------
async def until(
    check: Callable[[], tuple[bool, str]], what: str, within_s: float, system: System
) -> str:
    started = time.monotonic()
    seen = "nothing yet"
    while True:
        try:
            done, seen = await asyncio.to_thread(check)
        except Exception as exc:  # a service coming back
            done, seen = False, f"{type(exc).__name__}: {exc}"
        if done:
            return seen
        system.check_alive()
        elapsed = time.monotonic() - started
        if elapsed > within_s:
            pytest.fail(f"{what}: {seen} after {elapsed:.0f} s\n{system.tails()}")
        await asyncio.sleep(0.25)


def sensor_events(client: LiveClient, start: int = 0, end: int | None = None) -> list[tuple]:  # type: ignore[type-arg]
    """(eventId, deviceId, timestamp) of the sensor-data events received, in order."""
    return [
        (d["eventId"], d["deviceId"], d["timestamp"])
        for e, d in client.events[start:end]
        if e == "sensor-data" and isinstance(d, dict) and d.get("deviceId") in ROOMS
    ]


async def subscribed_client(web_url: str, token: str, last: int | None = None) -> LiveClient:
    client = LiveClient()
    auth = {"token": token} if last is None else {"token": token, "lastEventId": str(last)}
    await client.connect(web_url, auth)
    for device in ROOMS:
        ack = await client.call("subscribe-device", {"deviceId": device})
        assert ack.get("ok"), ack
    return client


@dataclass
class Fault:
    name: str
    inject: Callable[[System], None]
    recover: Callable[[System], None]
    # (url of, expected code during the outage) checked while the fault lasts
    during: Callable[[System], list[tuple[str, int]]]
    killed_role: str | None = None
    # Redis keeps no data across a restart (no persistence, as deployed): the replay buffer
    # goes with it, so a client away through the fault gets what was published after Redis
    # came back (README, reliability), not what came between its leaving and the fault.
    keeps_replay: bool = True


def _web_health(s: System) -> list[tuple[str, int]]:
    return [(f"{s.roles['web'].url}/api/health", 503)]


def _ingestion_health(s: System) -> list[tuple[str, int]]:
    return [(f"{s.roles['ingestion'].url}/health", 503)]


FAULTS = [
    Fault(
        "postgres restart",
        lambda s: s.infra.stop("postgres"),
        lambda s: s.infra.start("postgres"),
        _web_health,
    ),
    # A crash (immediate stop): ingestion commits without waiting for the WAL flush, so the
    # last batches' rows and offsets may be lost together, and must be read from Kafka again.
    Fault(
        "postgres crash",
        lambda s: s.infra.kill9("postgres"),
        lambda s: s.infra.start("postgres"),
        _web_health,
    ),
    Fault(
        "redis restart",
        lambda s: s.infra.stop("redis"),
        lambda s: s.infra.start("redis"),
        _web_health,
        keeps_replay=False,
    ),
    Fault(
        "kafka kill -9",
        lambda s: s.infra.kill9("kafka"),
        lambda s: s.infra.start("kafka"),
        _ingestion_health,
    ),
    Fault(
        "processing kill -9",
        lambda s: s.kill9("processing") and None,
        lambda s: s.start("processing") and None,
        lambda s: [],
        killed_role="processing",
    ),
    Fault(
        "alerts kill -9",
        lambda s: s.kill9("alerts") and None,
        lambda s: s.start("alerts") and None,
        lambda s: [],
        killed_role="alerts",
    ),
]


@pytest.mark.parametrize("fault", FAULTS, ids=[f.name for f in FAULTS])
async def test_fault_under_flow(system: System, fault: Fault) -> None:
    s = system
    await asyncio.to_thread(s.revive, ROLES)  # a previous failure must not fail this one
    sim = await asyncio.to_thread(s.start, "simulator")
    await asyncio.to_thread(s.wait_healthy, "simulator")
    pids = s.pids()

    # Flow: readings stored, statistics and live events out.
    stored_before = (await asyncio.to_thread(s.ingested))[0]
    await until(
        lambda: (
            (n := s.ingested()[0]) > stored_before + 2000,
            f"{n - stored_before:,} of 2,000 new readings stored",
        ),
        "flow established",
        90,
        s,
    )
    # Open alerts through the fault: one that repeats (high), one that does not (offline).
    await asyncio.to_thread(start_scenario, s, SCENARIO_DEVICE, "high", 600)
    await asyncio.to_thread(start_scenario, s, QUIET_DEVICE, "offline", 600)

    def alerts_open() -> tuple[bool, str]:
        rows = s.query(
            "SELECT device_id, alert_type FROM alerts WHERE status <> 'resolved'"
            " AND (device_id, alert_type) IN ((%s, 'threshold_exceeded'), (%s, 'device_offline'))",
            (SCENARIO_DEVICE, QUIET_DEVICE),
        )
        return len(rows) == 2, f"open: {rows}"

    await until(alerts_open, "the scenarios' alerts open before the fault", 60, s)
    token = await asyncio.to_thread(login, s.roles["web"].url)
    witness = await subscribed_client(s.roles["web"].url, token)
    roamer = await subscribed_client(s.roles["web"].url, token)
    try:
        await until(
            lambda: (
                len(sensor_events(roamer)) >= 2,
                f"{len(sensor_events(roamer))} events at the client",
            ),
            "live sensor-data at the clients",
            60,
            s,
        )
        # The client goes away; the fault happens while it is gone.
        await roamer.close()
        last = roamer.last_id()
        away_from = len(witness.events)

        await asyncio.to_thread(fault.inject, s)
        outage_started = time.monotonic()
        for url, code in fault.during(s):
            await until(
                lambda url=url, code=code: (  # type: ignore[misc]
                    (got := health_code(url)) == code,
                    f"{url} answered {got}",
                ),
                f"{url} answering {code} during the {fault.name}",
                30,
                s,
            )
        await asyncio.sleep(max(0.0, OUTAGE_S - (time.monotonic() - outage_started)))
        await asyncio.to_thread(fault.recover, s)
        recovered_from = len(witness.events)

        # Everything answers again, by itself.
        checks = [f"{s.roles['web'].url}/api/health"] + [
            f"{role.url}/health" for role in s.roles.values()
        ]
        for url in checks:
            await until(
                lambda url=url: ((got := health_code(url)) == 200, f"{url} answered {got}"),  # type: ignore[misc]
                f"{url} answering 200 after the {fault.name}",
                120,
                s,
            )
        # Live events flow again to the client that stayed.
        seen = len(sensor_events(witness))
        await until(
            lambda: (
                len(sensor_events(witness)) > seen + 2,
                f"{len(sensor_events(witness)) - seen} new events at the connected client",
            ),
            f"live events after the {fault.name}",
            90,
            s,
        )

        # The client that was away comes back with the last id it saw: it gets what it missed.
        missed = sensor_events(witness, away_from if fault.keeps_replay else recovered_from)
        back = await subscribed_client(s.roles["web"].url, token, last=last)
        got_before = set(sensor_events(roamer))

        def caught_up() -> tuple[bool, str]:
            have = got_before | set(sensor_events(back))
            lost = [e for e in missed if e not in have]
            return not lost, (
                f"{len(lost)} of {len(missed)} missed events not received after reconnecting "
                f"with lastEventId {last} (first: {lost[:3]})"
            )

        await until(caught_up, "what the client missed", 30, s)
        # One system-wide sequence: ids only grow, through the fault too (a client keeps
        # the highest id it saw and asks for what came after it).
        ids = [int(e[0]) for e in sensor_events(witness)]
        backwards = [(a, b) for a, b in itertools.pairwise(ids) if b <= a]
        assert not backwards, f"event ids went backwards after the {fault.name}: {backwards[:5]}"
        await back.close()
    finally:
        await witness.close()
        await roamer.close()

    # Nobody restarted a role by hand.
    expected = dict(pids)
    if fault.killed_role:
        expected[fault.killed_role] = s.roles[fault.killed_role].pid
    await asyncio.to_thread(s.assert_unchanged, expected)

    # At rest: stop the simulator, let the pipeline drain, compare.
    assert await asyncio.to_thread(s.stop, "simulator") == 0, sim.tail()
    ends = sum(await asyncio.to_thread(s.end_offsets, "sensors-data"))
    dlq = len(await asyncio.to_thread(s.dlq))

    def drained() -> tuple[bool, str]:
        rows, _, offsets = s.ingested()
        return offsets >= ends, f"readings stored {rows:,} of {ends - dlq:,}"

    await until(drained, f"ingestion drained after the {fault.name}", 120, s)
    rows, distinct, offsets = await asyncio.to_thread(s.ingested)
    assert rows == distinct, f"{rows - distinct:,} readings stored twice"
    assert rows == offsets - dlq, f"{rows:,} rows for {offsets:,} messages, {dlq} dead-lettered"

    devices = [
        d for (d,) in await asyncio.to_thread(s.query, "SELECT DISTINCT device_id FROM devices")
    ]

    def equal() -> tuple[bool, str]:
        problems = stats_mismatches(s, devices)
        return not problems, f"{len(problems)} devices differ: " + "; ".join(problems[:5])

    await until(equal, "live statistics equal a recomputation from PostgreSQL", 60, s)

    def alerts_consistent() -> tuple[bool, str]:
        problems = alert_problems(s)
        stuck = s.query(
            "SELECT a.device_id FROM alerts a WHERE a.status <> 'resolved'"
            " AND a.alert_type = 'device_offline' AND EXISTS (SELECT 1 FROM sensor_readings r"
            ' WHERE r.device_id = a.device_id AND r."timestamp" > a.triggered_at + %s)',
            (timedelta(seconds=1),),
        )
        if stuck:
            problems.append(f"device_offline still open for reporting devices: {stuck[:10]}")
        return not problems, "; ".join(problems)

    await until(alerts_consistent, "open alerts consistent", 60, s)
    await asyncio.to_thread(s.check_alive)
