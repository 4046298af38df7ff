"""Finding 1 (and the edge dates of 8): one request must not take the system down. Every value
the API writes is bounded before it is written; the alerts role survives bad rows written by
others (log, skip, keep running)."""

from __future__ import annotations

import time

import httpx
import orjson
import redis

from iotmon.cache import keys
from tests.security.conftest import System

DEVICE = "device-001"  # seeded by the migrations


def test_a_silence_ending_after_year_9999_is_refused_before_it_is_written(
    system: System,
) -> None:
    web = system.start("web")
    before = system.sql("SELECT count(*) FROM silences")[0][0]
    for body in (
        {"deviceId": DEVICE, "endsAt": "9999-12-31T23:59:59-01:00"},  # year 10000 in UTC
        {"deviceId": DEVICE, "endsAt": "9999-12-31T23:59:59Z"},  # no bound before
        {"deviceId": DEVICE, "startsAt": "0001-01-01T00:00:00+01:00", "durationS": 60},
        {"deviceId": DEVICE, "startsAt": "0001-01-01T00:00:00Z", "durationS": 60},
        {"deviceId": DEVICE, "endsAt": "2000-01-01T00:00:00Z"},  # before now
    ):
        r = httpx.post(
            f"{web.url}/api/silences", json=body, headers=system.h(web, "operator"), timeout=10
        )
        assert r.status_code == 422, (body, r.status_code, r.text)
    assert system.sql("SELECT count(*) FROM silences")[0][0] == before
    r = httpx.get(f"{web.url}/api/silences", headers=system.h(web, "viewer"), timeout=10)
    assert r.status_code == 200, r.text
    # within the bounds, still fine; the date is stored in UTC
    r = httpx.post(
        f"{web.url}/api/silences",
        json={"deviceId": DEVICE, "endsAt": "2099-01-01T00:00:00+01:00"},
        headers=system.h(web, "operator"),
        timeout=10,
    )
    assert r.status_code == 422, r.text  # more than 366 days
    r = httpx.post(
        f"{web.url}/api/silences",
        json={"deviceId": DEVICE, "durationS": 3600, "startsAt": "2030-01-01T10:00:00+02:00"},
        headers=system.h(web, "operator"),
        timeout=10,
    )
    assert r.status_code == 422, r.text  # starts more than a year from now


def test_edge_dates_and_nul_answer_4xx_never_500(system: System) -> None:
    web = system.start("web")
    h = system.h(web, "viewer")
    for path in (
        f"/api/devices/{DEVICE}/history?to=0001-01-01T12:00:00Z",
        f"/api/devices/{DEVICE}/history?from=9999-12-31T23:59:59-01:00",
        f"/api/devices/{DEVICE}/history.csv?to=0001-01-01T12:00:00Z",
        "/api/alerts?from=0001-01-01T00:00:00%2B01:00",
        "/api/alerts/history?to=0001-01-01T00:00:00Z",
        "/%00",
        "/api/%00",
        "/assets/%00",
    ):
        r = httpx.get(f"{web.url}{path}", headers=h, timeout=10)
        assert 400 <= r.status_code < 500, (path, r.status_code, r.text[:300])


def test_device_thresholds_are_finite_bounded_and_ordered(system: System) -> None:
    web = system.start("web")
    h = system.h(web, "admin")
    url = f"{web.url}/api/devices/device-003/config"
    for body in (
        {"normalMin": -1e308, "normalMax": 1e308, "alertMax": None},
        {"normalMax": 1e10},
        {"alertMin": -1e9 - 1},
        {"normalMin": 90, "normalMax": 10},
        {"alertMin": 50, "normalMin": 40},
        {"location": "hall\x00"},
        {"unit": "x" * 33},
    ):
        r = httpx.put(
            url,
            content=orjson.dumps(body),
            headers=h | {"content-type": "application/json"},
            timeout=10,
        )
        assert r.status_code == 422, (body, r.status_code, r.text)
    r = httpx.put(
        url,
        json={"normalMin": -1e9, "normalMax": 1e9, "alertMin": None, "alertMax": None},
        headers=h,
        timeout=10,
    )
    assert r.status_code == 200, r.text


def test_the_alerts_role_survives_bad_rows_written_by_others(system: System) -> None:
    """The two rows that crashed the alerts role on every start, written straight into the
    database: it logs them, skips them, and keeps detecting (an offline device here)."""
    system.sql(
        "INSERT INTO silences (device_id, starts_at, ends_at, created_by)"
        " VALUES ('device-002', now(), '9999-12-31T23:59:59-01:00', 'attacker'),"
        " ('device-002', now(), 'infinity', 'attacker')"
    )
    system.sql(
        "UPDATE devices SET normal_min = -1e308, normal_max = 1e308, alert_max = NULL"
        " WHERE device_id = 'device-003'"
    )
    alerts = system.start("alerts", IOTMON_ALERT_OFFLINE_TIMEOUT_S="1")
    # a device last seen long ago: it goes offline once the role has watched for 1 s, which
    # opens an alert, which reads the silences
    r = redis.Redis.from_url(system.redis_url)
    device = "device-002"
    r.zadd(keys.LAST_SEEN, {device: time.time() - 3600})
    deadline = time.monotonic() + 30
    while not system.sql(
        "SELECT 1 FROM alerts WHERE device_id = %s AND alert_type = 'device_offline'", device
    ):
        assert alerts.alive(), alerts.text()[-3000:]
        assert time.monotonic() < deadline, alerts.text()[-3000:]
        time.sleep(0.3)
    time.sleep(12)  # past the device refresh (10 s) that overflowed
    assert alerts.alive(), alerts.text()[-3000:]
    assert httpx.get(f"{alerts.url}/health", timeout=5).status_code == 200
    text = alerts.text()
    assert "silence skipped" in text, text[-3000:]
    assert "device configuration skipped" in text, text[-3000:]
    # and the API still lists silences (the bad ones left out)
    web = system.start("web")
    r2 = httpx.get(
        f"{web.url}/api/silences?includeExpired=true", headers=system.h(web, "viewer"), timeout=10
    )
    assert r2.status_code == 200, r2.text
    r.zrem(keys.LAST_SEEN, device)
