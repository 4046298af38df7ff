"""Flap detection on the real engine: real PostgreSQL and Redis, real notifications to a local
webhook receiver and SMTP server, time from an injected clock."""

# ruff: noqa: F811 (fixtures imported from other test modules, then used as parameters)

from __future__ import annotations

import asyncio
from typing import Any

from iotmon.alerts import lifecycle
from iotmon.alerts.config import rule_config
from iotmon.alerts.engine import ACTIVE_KEY, AlertEngine
from iotmon.alerts.flapping import FlapConfig, FlapTracker
from iotmon.config import Settings
from tests.integration.test_alerts import (  # noqa: F401 (the fixtures)
    Mailbox,
    Webhooks,
    candidate,
    engine_parts,
    mailbox,
    make_engine,
    webhooks,
)

FLAP = {"flap_changes": 4, "flap_window_s": 600.0, "flap_quiet_s": 300.0}


async def spike(engine: AlertEngine, clock: Any, device: str = "device-001") -> None:
    """One injected spike: a breach, then back inside the range a few seconds later."""
    await engine.handle(candidate(device=device, value=95))
    clock.t += 3
    await engine.handle(candidate(device=device, value=70, state="clear"))
    clock.t += 17


def subject(box: Mailbox, i: int) -> str:
    """The i-th email's subject, unfolded (a long one spans lines)."""
    unfolded = box.messages[i].replace("\r\n", "\n").replace("\n ", " ")
    return next(line for line in unfolded.splitlines() if line.startswith("Subject:"))


async def delivered(webhooks: Webhooks, n: int) -> list[str]:
    for _ in range(50):
        if len(webhooks.received) >= n:
            break
        await asyncio.sleep(0.05)
    await asyncio.sleep(0.1)  # and nothing more
    return webhooks.events()


async def test_spikes_flap_notifications_held_one_says_so_one_says_settled(
    engine_parts: dict[str, Any], webhooks: Webhooks, mailbox: tuple[Mailbox, int]
) -> None:
    clock = engine_parts["clock"]
    engine = make_engine(engine_parts, **FLAP)
    await engine.start()
    for _ in range(2):  # four changes: not more than four, notified as usual
        await spike(engine, clock)
    assert await delivered(webhooks, 4) == [
        "alert-triggered",
        "alert-resolved",
        "alert-triggered",
        "alert-resolved",
    ]
    # The fifth change (the third trigger) makes it flapping: its own notification is held,
    # one says it flaps.
    for _ in range(20):
        await spike(engine, clock)
    events = await delivered(webhooks, 5)
    assert events[4:] == ["alert-flapping"]
    flapping_note = webhooks.received[4]["alert"]
    assert flapping_note["flapping"] is True
    assert flapping_note["status"] == "triggered"
    assert "FLAPPING" in subject(mailbox[0], 4)
    assert engine.stats["notificationsHeld"] == 2 * 20 - 1

    # Shown: every alert of the episode is marked, the events carry it, its history says so.
    cur = await engine_parts["conn"].execute(
        "SELECT flapping, count(*) FROM alerts GROUP BY flapping ORDER BY flapping"
    )
    assert await cur.fetchall() == [(False, 2), (True, 20)]
    live = [p for e, p, room in engine_parts["events"] if room == "alerts"]
    assert live[-1]["flapping"] is True
    latest = await lifecycle.latest(engine_parts["conn"], "device-001", "threshold_exceeded")
    assert latest is not None
    assert latest.as_event()["flapping"] is True

    # Not quiet long enough: still flapping.
    clock.t += 200
    assert await engine.settle_flapping() == []
    # Quiet for the quiet period: settled, in the state it settled in (resolved: the noise
    # is over); the latest alert unmarked.
    clock.t += 100
    settled = await engine.settle_flapping()
    assert [a.status for a in settled] == ["resolved"]
    assert settled[0].flapping is False
    events = await delivered(webhooks, 6)
    assert events[5:] == ["alert-settled"]
    assert webhooks.received[5]["alert"]["status"] == "resolved"
    assert "SETTLED (RESOLVED)" in subject(mailbox[0], 5)
    history = await lifecycle.transitions(engine_parts["conn"], settled[0].id)
    assert history[-1]["note"] == lifecycle.FLAP_SETTLED

    # Settled counts afresh: the next spike is notified as usual.
    await spike(engine, clock)
    assert (await delivered(webhooks, 8))[6:] == ["alert-triggered", "alert-resolved"]


async def test_a_real_problem_on_a_flapping_device_is_notified_when_it_settles_open(
    engine_parts: dict[str, Any], webhooks: Webhooks, mailbox: tuple[Mailbox, int]
) -> None:
    clock = engine_parts["clock"]
    engine = make_engine(engine_parts, **FLAP)
    await engine.start()
    for _ in range(3):
        await spike(engine, clock)
    assert (await delivered(webhooks, 5))[4:] == ["alert-flapping"]
    # Then the breach holds: a real problem. Nothing while it flaps ...
    for _ in range(30):
        await engine.handle(candidate(value=99))
        clock.t += 10
        await engine.settle_flapping()
    events = await delivered(webhooks, 6)
    # ... then, quiet for 300 s with the alert open: settled, triggered. A person hears.
    assert events[4:] == ["alert-flapping", "alert-settled"]
    assert webhooks.received[5]["alert"]["status"] == "triggered"
    assert webhooks.received[5]["alert"]["flapping"] is False
    open_now = await lifecycle.open_alerts(engine_parts["conn"])
    assert [a.flapping for a in open_now] == [False]
    assert await engine_parts["redis"].hexists(ACTIVE_KEY, str(open_now[0].id))
    # From now on it is notified as usual: its end too (whoever heard of it hears it is over).
    await engine.handle(candidate(value=70, state="clear"))
    assert (await delivered(webhooks, 7))[6:] == ["alert-resolved"]


async def test_flapping_survives_a_restart_of_the_engine(
    engine_parts: dict[str, Any], webhooks: Webhooks, mailbox: tuple[Mailbox, int]
) -> None:
    clock = engine_parts["clock"]
    engine = make_engine(engine_parts, **FLAP)
    await engine.start()
    for _ in range(3):
        await spike(engine, clock)
    await spike(engine, clock, device="device-002")  # two changes: not flapping
    assert engine.flaps.flapping() == [("device-001", "threshold_exceeded")]
    sent = len(await delivered(webhooks, 7))

    # A new engine (the alerts role restarted) knows from PostgreSQL alone.
    again = make_engine(engine_parts, **FLAP)
    await again.start()
    assert again.flaps.flapping() == [("device-001", "threshold_exceeded")]
    await spike(again, clock)  # held, not announced again
    assert len(await delivered(webhooks, sent + 1)) == sent
    # device-002's two changes are remembered: three more make five, flapping.
    await spike(again, clock, device="device-002")
    await again.handle(candidate(device="device-002", value=95))
    events = await delivered(webhooks, sent + 3)
    assert events[sent:] == ["alert-triggered", "alert-resolved", "alert-flapping"]
    assert webhooks.received[-1]["alert"]["deviceId"] == "device-002"

    # Quiet: both settle, once each, also after another restart.
    clock.t += 400
    third = make_engine(engine_parts, **FLAP)
    await third.start()
    settled = await third.settle_flapping()
    assert sorted((a.device_id, a.status) for a in settled) == [
        ("device-001", "resolved"),
        ("device-002", "triggered"),
    ]
    fourth = make_engine(engine_parts, **FLAP)
    await fourth.start()
    assert fourth.flaps.flapping() == []
    assert await fourth.settle_flapping() == []
    events = await delivered(webhooks, sent + 5)
    assert sorted(events[sent + 3 :]) == ["alert-settled", "alert-settled"]


async def test_flap_detection_off_notifies_every_change(
    engine_parts: dict[str, Any], webhooks: Webhooks, mailbox: tuple[Mailbox, int]
) -> None:
    clock = engine_parts["clock"]
    engine = make_engine(engine_parts, flap_changes=0)
    await engine.start()
    for _ in range(5):
        await spike(engine, clock)
    assert await delivered(webhooks, 10) == ["alert-triggered", "alert-resolved"] * 5
    assert engine.flaps.flapping() == []


def test_the_settings_turn_it_on_and_the_tracker_counts_in_its_window() -> None:
    config = rule_config(Settings())
    assert config.flap_changes > 0
    tracker = FlapTracker(FlapConfig(changes=2, window_s=60, quiet_s=30))
    key = ("d", "threshold_exceeded")
    # Changes spread wider than the window never make it flap.
    assert [tracker.change(key, t) for t in (0, 70, 140, 210, 280)] == ["steady"] * 5
    assert [tracker.change(key, t) for t in (290, 295)] == ["steady", "started"]
    assert tracker.change(key, 300) == "flapping"
    assert tracker.settled(329) == []
    assert tracker.settled(330) == [key]
    tracker.settle(key)
    assert not tracker.is_flapping(key)
    assert tracker.change(key, 331) == "steady"  # counts afresh
