"""The REST API on the real PostgreSQL and Redis: every endpoint's happy path, filters,
pagination, and its 401/403/404/409/422/429 answers."""

from __future__ import annotations

import asyncio
import random
import time
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import orjson
import psycopg
import pytest
import redis.asyncio as aioredis

from iotmon.alerts import lifecycle
from iotmon.cache import keys
from iotmon.config import Settings
from iotmon.readings.queries import csv_field
from iotmon.roles.http import make_app
from iotmon.roles.runtime import Services
from iotmon.roles.web import WebRole
from iotmon.users.service import create_user
from iotmon.web import auth

PASSWORD = "correct-horse"  # noqa: S105 (test users)


@dataclass
class Api:
    http: httpx.AsyncClient
    tokens: dict[str, str]  # role -> bearer token
    db: str
    redis: aioredis.Redis
    role: WebRole

    def h(self, role: str = "viewer") -> dict[str, str]:
        return {"Authorization": f"Bearer {self.tokens[role]}"}

    async def get(self, path: str, role: str = "viewer", **kw: Any) -> httpx.Response:
        return await self.http.get(path, headers=self.h(role), **kw)

    async def put(self, path: str, role: str = "admin", **kw: Any) -> httpx.Response:
        return await self.http.put(path, headers=self.h(role), **kw)


def web_app(settings: Settings, database_url: str) -> tuple[WebRole, Any]:
    """A web role on the real PostgreSQL and Redis, and the ASGI app a process would serve."""
    assert settings.redis_url is not None
    services = Services(
        settings=settings,
        bus=None,  # type: ignore[arg-type]
        database_url=database_url,
        redis_url=settings.redis_url.get_secret_value(),
    )
    role = WebRole(services)
    return role, make_app(services, [role], {"database", "redis"})


@pytest.fixture
async def api(settings: Settings, database_url: str) -> AsyncIterator[Api]:
    settings = settings.model_copy(update={"rate_limit_per_minute": 0})
    assert settings.redis_url is not None
    with psycopg.connect(database_url, autocommit=True) as conn:
        for role in auth.ROLES:
            create_user(conn, role, PASSWORD, role)
    role, app = web_app(settings, database_url)
    stop = asyncio.Event()
    task = asyncio.create_task(role.run(stop))
    await asyncio.sleep(0.2)
    client_ip = f"10.{random.randint(0, 255)}.{random.randint(0, 255)}.{random.randint(1, 254)}"
    transport = httpx.ASGITransport(app=app, client=(client_ip, 40000))
    async with httpx.AsyncClient(transport=transport, base_url="http://test") as http:
        tokens = {}
        for name in auth.ROLES:
            r = await http.post("/api/auth/token", json={"username": name, "password": PASSWORD})
            assert r.status_code == 200, r.text
            tokens[name] = r.json()["data"]["accessToken"]
        r = aioredis.Redis.from_url(settings.redis_url.get_secret_value())
        yield Api(http, tokens, database_url, r, role)
        await r.aclose()
    stop.set()
    await task


def sql(db: str, query: str, *params: Any) -> list[tuple[Any, ...]]:
    with psycopg.connect(db, autocommit=True) as conn:
        cur = conn.execute(query, params)
        return cur.fetchall() if cur.description else []


def new_device(db: str, **cols: Any) -> str:
    device = f"t-{uuid.uuid4().hex[:8]}"
    values = {
        "device_id": device,
        "device_type": "temperature",
        "location": "lab-1",
        "unit": "celsius",
        "normal_min": 20,
        "normal_max": 80,
        "alert_min": 15,
        "alert_max": 85,
    } | cols
    names = ", ".join(values)
    marks = ", ".join(["%s"] * len(values))
    sql(db, f"INSERT INTO devices ({names}) VALUES ({marks})", *values.values())
    return device


def load_readings(db: str, device: str, start: datetime, n: int, step_s: float = 1.0) -> None:
    with psycopg.connect(db, autocommit=True) as conn:
        from iotmon.db import partitions

        first = start.date()
        partitions.ensure(conn, [first + timedelta(days=i) for i in range(-1, 3)])
        with conn.cursor().copy(
            'COPY sensor_readings (device_id, "timestamp", sensor_type, value, unit) FROM STDIN'
        ) as copy:
            for i in range(n):
                copy.write_row(
                    (device, start + timedelta(seconds=i * step_s), "temperature", 50 + i % 7, "c")
                )


# --- auth ---
async def test_tokens_and_roles(api: Api) -> None:
    r = await api.http.post("/api/auth/token", json={"username": "viewer", "password": "nope"})
    assert r.status_code == 401
    assert r.json() == {
        "success": False,
        "error": {
            "code": "unauthorized",
            "message": "wrong user name or password",
            "details": None,
        },
    }
    r = await api.http.post("/api/auth/token", json={"username": "ghost", "password": "x" * 9})
    assert r.status_code == 401
    r = await api.http.post("/api/auth/token", json={"username": "viewer"})
    assert r.status_code == 422
    assert r.json()["error"]["code"] == "validation_error"
    assert "password" in r.json()["error"]["message"]

    assert (await api.http.get("/api/devices")).status_code == 401
    bad = await api.http.get("/api/devices", headers={"Authorization": "Bearer not.a.token"})
    assert bad.status_code == 401
    assert bad.json()["error"]["message"] == "the token is not valid"
    expired, _ = api.role.tokens.issue(auth.Principal("viewer", "viewer"), now=time.time() - 7200)
    r = await api.http.get("/api/devices", headers={"Authorization": f"Bearer {expired}"})
    assert r.status_code == 401
    assert "expired" in r.json()["error"]["message"]
    forged = auth.Tokens("another-key-of-at-least-32-characters").issue(
        auth.Principal("viewer", "admin")
    )[0]
    r = await api.http.get("/api/devices", headers={"Authorization": f"Bearer {forged}"})
    assert r.status_code == 401

    # A viewer reads but changes nothing.
    assert (await api.get("/api/devices")).status_code == 200
    r = await api.put("/api/devices/device-001/config", role="viewer", json={"location": "x"})
    assert r.status_code == 403
    assert "admin" in r.json()["error"]["message"]
    r = await api.put("/api/devices/device-001/config", role="operator", json={"location": "x"})
    assert r.status_code == 403
    assert (await api.put("/api/alerts/1/acknowledge", role="viewer")).status_code == 403
    r = await api.http.post(
        "/api/silences", headers=api.h("viewer"), json={"type": "data_anomaly", "durationS": 60}
    )
    assert r.status_code == 403
    assert (await api.get("/api/users", role="operator")).status_code == 403


async def test_a_repeated_read_is_served_again_only_to_those_allowed_to_read_it(
    api: Api,
) -> None:
    """Replay (web/asgi.py) answers repeats of the device list without the framework; the
    token, the CORS origin and the metrics are still those of each request."""
    from iotmon.web.metrics import REQUESTS

    first = await api.get("/api/devices")
    again = await api.get("/api/devices")
    assert again.status_code == 200
    assert again.headers["x-cache"] == "hit"
    assert again.content == first.content
    assert again.headers["content-encoding"] == first.headers["content-encoding"] == "gzip"
    assert again.headers["x-content-type-options"] == "nosniff"

    assert (await api.http.get("/api/devices")).status_code == 401
    bad = await api.http.get("/api/devices", headers={"Authorization": "Bearer not.a.token"})
    assert bad.status_code == 401
    expired, _ = api.role.tokens.issue(auth.Principal("viewer", "viewer"), now=time.time() - 7200)
    r = await api.http.get("/api/devices", headers={"Authorization": f"Bearer {expired}"})
    assert r.status_code == 401
    assert "expired" in r.json()["error"]["message"]

    plant = api.h() | {"Origin": "http://plant.example"}
    for _ in range(2):
        r = await api.http.get("/api/devices", headers=plant)
        assert r.headers["access-control-allow-origin"] in ("*", "http://plant.example")
    assert "access-control-allow-origin" not in (await api.get("/api/devices")).headers

    counted = REQUESTS.labels("GET", "/api/devices", "200")
    before = counted._value.get()
    for _ in range(3):
        assert (await api.get("/api/devices")).headers["x-cache"] == "hit"
    assert counted._value.get() == before + 3


# --- devices ---
async def test_device_list_with_live_state_filters_and_pages(api: Api) -> None:
    device = new_device(api.db, location="paint-shop-9", device_type="pressure", unit="psi")
    now = time.time()
    await api.redis.set(
        keys.current(device),
        orjson.dumps({"value": 42.5, "timestamp": "2026-01-01T00:00:00.000Z", "status": "normal"}),
    )
    await api.redis.set(
        keys.stats(device, "24h"),
        orjson.dumps({"avg": 41.0, "min": 30.0, "max": 50.0, "trend": "increasing"}),
    )
    await api.redis.zadd(keys.LAST_SEEN, {device: now})
    r = await api.get("/api/devices", params={"limit": 1000})
    assert r.status_code == 200
    body = r.json()
    assert body["success"] is True
    assert body["meta"]["totalDevices"] == 6
    ids = [d["deviceId"] for d in body["data"]["devices"]]
    assert ids == sorted(ids)
    mine = next(d for d in body["data"]["devices"] if d["deviceId"] == device)
    assert mine["lastReading"] == {
        "value": 42.5,
        "timestamp": "2026-01-01T00:00:00.000Z",
        "status": "normal",
    }
    assert mine["stats"] == {"avg24h": 41.0, "min24h": 30.0, "max24h": 50.0, "trend": "increasing"}
    assert mine["connectivity"] == "online"
    assert mine["alertStatus"] == "normal"
    assert mine["type"] == "pressure"

    r = await api.get("/api/devices", params={"location": "paint-shop-9"})
    assert [d["deviceId"] for d in r.json()["data"]["devices"]] == [device]
    r = await api.get("/api/devices", params={"type": "temperature"})
    assert [d["deviceId"] for d in r.json()["data"]["devices"]] == ["device-001"]
    r = await api.get("/api/devices", params={"status": "maintenance"})
    assert r.json()["data"]["devices"] == []
    assert r.json()["meta"]["totalDevices"] == 0
    # Search: part of the id, type or location, any case; LIKE's wildcards are literal.
    r = await api.get("/api/devices", params={"q": "PAINT-shop"})
    assert [d["deviceId"] for d in r.json()["data"]["devices"]] == [device]
    r = await api.get("/api/devices", params={"q": "device-00", "limit": 2})
    assert r.json()["meta"]["totalDevices"] == 5
    assert len(r.json()["data"]["devices"]) == 2
    r = await api.get("/api/devices", params={"q": "ressur"})
    assert {d["type"] for d in r.json()["data"]["devices"]} == {"pressure"}
    for literal in ("%", "_", "\\"):
        r = await api.get("/api/devices", params={"q": literal})
        assert r.json()["meta"]["totalDevices"] == 0, literal

    page1 = (await api.get("/api/devices", params={"limit": 2})).json()
    page2 = (await api.get("/api/devices", params={"limit": 2, "offset": 2})).json()
    last = (await api.get("/api/devices", params={"limit": 2, "offset": 6})).json()
    assert [d["deviceId"] for d in page1["data"]["devices"]] == ["device-001", "device-002"]
    assert [d["deviceId"] for d in page2["data"]["devices"]] == ["device-003", "device-004"]
    assert last["data"]["devices"] == []
    assert last["meta"]["totalDevices"] == 6

    for bad in ({"limit": 0}, {"limit": 5000}, {"offset": -1}, {"status": "broken"}):
        r = await api.get("/api/devices", params=bad)
        assert r.status_code == 422, bad
        assert r.json()["success"] is False


async def test_device_details_current_and_404(api: Api) -> None:
    device = new_device(api.db, offline_timeout_s=10)
    await api.redis.zadd(keys.LAST_SEEN, {device: time.time() - 60})
    r = await api.get(f"/api/devices/{device}")
    assert r.status_code == 200
    d = r.json()["data"]
    assert (d["deviceId"], d["alertMax"], d["offlineTimeoutS"]) == (device, 85.0, 10.0)
    assert d["connectivity"] == "offline"  # silent for 60 s, timeout 10 s
    # No reading anywhere yet: a clear 404.
    r = await api.get(f"/api/devices/{device}/current")
    assert r.status_code == 404
    assert r.json()["error"]["code"] == "no_data"
    # From PostgreSQL when Redis has nothing, and the status against its thresholds.
    start = datetime.now(UTC) - timedelta(minutes=5)
    load_readings(api.db, device, start, 10)
    sql(api.db, "UPDATE sensor_readings SET value = 99 WHERE device_id = %s", device)
    r = await api.get(f"/api/devices/{device}/current")
    assert r.json()["data"]["value"] == 99
    assert r.json()["data"]["status"] == "critical"
    # From Redis when processing wrote it.
    await api.redis.set(
        keys.current(device),
        orjson.dumps({"value": 1.0, "timestamp": "2026-01-01T00:00:00.000Z", "status": "low"}),
    )
    assert (await api.get(f"/api/devices/{device}/current")).json()["data"]["value"] == 1.0

    r = await api.get("/api/devices/no-such-device")
    assert r.status_code == 404
    assert r.json()["error"] == {
        "code": "not_found",
        "message": "device 'no-such-device' does not exist",
        "details": None,
    }
    assert (await api.get("/api/devices/bad%20id")).status_code == 422
    assert (await api.get("/api/nowhere")).status_code == 404


async def test_history_is_raw_up_to_limit_then_downsampled_in_buckets(api: Api) -> None:
    device = new_device(api.db)
    start = (datetime.now(UTC) - timedelta(hours=2)).replace(microsecond=0)
    load_readings(api.db, device, start, 3600)
    end = start + timedelta(hours=1)
    params = {"from": start.isoformat(), "to": end.isoformat()}
    r = await api.get(f"/api/devices/{device}/history", params=params | {"limit": 5000})
    data = r.json()["data"]
    assert not data["downsampled"]
    assert len(data["points"]) == 3600
    assert data["points"][0]["value"] == 50

    r = await api.get(f"/api/devices/{device}/history", params=params | {"limit": 60})
    data = r.json()["data"]
    assert data["downsampled"]
    assert data["bucketSeconds"] == 60
    assert len(data["points"]) == 60
    assert r.json()["meta"]["count"] == 60
    expected = sql(
        api.db,
        "SELECT avg(value), min(value), max(value), count(*) FROM sensor_readings"
        ' WHERE device_id = %s AND "timestamp" >= %s AND "timestamp" < %s',
        device,
        start,
        start + timedelta(minutes=1),
    )[0]
    p = data["points"][0]
    assert (p["value"], p["min"], p["max"], p["count"]) == pytest.approx(expected)
    assert sum(p["count"] for p in data["points"]) == 3600

    # Default range: the last 24 hours.
    r = await api.get(f"/api/devices/{device}/history", params={"limit": 10})
    assert r.json()["data"]["downsampled"]
    assert sum(p["count"] for p in r.json()["data"]["points"]) == 3600

    bad = {"from": end.isoformat(), "to": start.isoformat()}
    r = await api.get(f"/api/devices/{device}/history", params=bad)
    assert r.status_code == 422
    assert r.json()["error"]["code"] == "invalid_range"
    r = await api.get(f"/api/devices/{device}/history", params={"from": "yesterday"})
    assert r.status_code == 422
    assert (await api.get("/api/devices/ghost/history")).status_code == 404

    r = await api.get(f"/api/devices/{device}/history.csv", params=params | {"limit": 3})
    assert r.status_code == 200
    assert r.headers["content-type"].startswith("text/csv")
    assert "attachment" in r.headers["content-disposition"]
    lines = r.text.splitlines()
    assert lines[0] == "timestamp,device_id,sensor_type,value,unit"
    assert len(lines) == 4
    assert lines[1].split(",")[1:] == [device, "temperature", "50.0", "c"]
    r = await api.get(f"/api/devices/{device}/history.csv", params=params)
    assert len(r.text.splitlines()) == 3601


def test_csv_fields_are_quoted_and_not_formulas() -> None:
    assert csv_field("a,b") == '"a,b"'
    assert csv_field('say "hi"') == '"say ""hi"""'
    assert csv_field("=SUM(A1)") == "'=SUM(A1)"
    assert csv_field("-1.5") == "-1.5"
    assert csv_field(None) == ""


async def test_device_config_is_validated_and_applied(api: Api) -> None:
    device = new_device(api.db)
    r = await api.put(
        f"/api/devices/{device}/config",
        json={"alertMax": 90, "location": "line-7", "intervalMs": 500, "offlineTimeoutS": 12},
    )
    assert r.status_code == 200, r.text
    d = r.json()["data"]
    assert (d["alertMax"], d["location"], d["intervalMs"], d["offlineTimeoutS"]) == (
        90,
        "line-7",
        500,
        12,
    )
    assert sql(api.db, "SELECT alert_max, location FROM devices WHERE device_id = %s", device) == [
        (90.0, "line-7")
    ]
    # Clearing a threshold is allowed; breaking the ordering of thresholds is not.
    r = await api.put(f"/api/devices/{device}/config", json={"alertMin": None})
    assert r.status_code == 200
    assert r.json()["data"]["alertMin"] is None
    for body, words in (
        ({"alertMax": 70}, "normalMax (80.0) must not be above alertMax (70"),
        ({"normalMax": None, "normalMin": 90, "alertMax": 85}, "must not be above alertMax"),
        ({"normalMin": 90}, "normalMin (90.0) must be below normalMax"),
        ({"location": None}, "cannot be null"),
        ({}, "nothing to change"),
    ):
        r = await api.put(f"/api/devices/{device}/config", json=body)
        assert r.status_code == 422, body
        assert words in r.json()["error"]["message"], r.json()
    for body in (
        {"colour": "red"},
        {"intervalMs": 0},
        {"status": "sleeping"},
        {"location": "line\u0000seven"},  # PostgreSQL holds no NUL: the request's fault
    ):
        r = await api.put(f"/api/devices/{device}/config", json=body)
        assert r.status_code == 422, body
        assert r.json()["error"]["code"] == "validation_error"
    r = await api.put("/api/devices/ghost/config", json={"location": "x"})
    assert r.status_code == 404


# --- alerts ---
async def open_alert(db: str, device: str, kind: str, severity: str, at: datetime) -> int:
    async with await psycopg.AsyncConnection.connect(db, autocommit=True) as conn:
        alert, _ = await lifecycle.open_or_update(
            conn,
            device_id=device,
            alert_type=kind,
            message=f"{device} {kind}",
            severity=severity,
            value=90.0,
            threshold=85.0,
            at=at,
        )
    return alert.id


async def test_alert_list_filters_pages_and_details(
    api: Api, monkeypatch: pytest.MonkeyPatch
) -> None:
    now = datetime.now(UTC)
    a1 = await open_alert(api.db, "device-001", "threshold_exceeded", "critical", now)
    a2 = await open_alert(api.db, "device-002", "data_anomaly", "low", now - timedelta(minutes=1))
    a3 = await open_alert(
        api.db, "device-002", "trend_warning", "medium", now - timedelta(minutes=2)
    )
    async with await psycopg.AsyncConnection.connect(api.db, autocommit=True) as conn:
        await lifecycle.resolve(conn, a3, "someone", "fixed")

    r = await api.get("/api/alerts")
    body = r.json()
    assert [a["id"] for a in body["data"]["alerts"]] == [a1, a2]  # open ones, newest first
    assert body["meta"]["totalAlerts"] == 2
    assert (body["meta"]["criticalAlerts"], body["meta"]["lowAlerts"]) == (1, 1)
    assert body["meta"]["countsCapped"] is False
    first = body["data"]["alerts"][0]
    assert {"alertId", "deviceId", "type", "severity", "value", "threshold", "status"} <= set(first)

    async def ids(**params: Any) -> list[int]:
        r = await api.get("/api/alerts", params=params)
        assert r.status_code == 200, r.text
        return [a["id"] for a in r.json()["data"]["alerts"]]

    assert await ids(status="all") == [a1, a2, a3]
    assert await ids(status="resolved") == [a3]
    assert await ids(severity="critical") == [a1]
    assert await ids(deviceId="device-002", status="all") == [a2, a3]
    assert await ids(type="data_anomaly") == [a2]
    assert await ids(status="all", limit=1, offset=1) == [a2]
    assert await ids(status="all", **{"from": (now - timedelta(seconds=90)).isoformat()}) == [
        a1,
        a2,
    ]
    for bad in ({"status": "sleeping"}, {"severity": "dire"}, {"limit": 0}, {"type": "x"}):
        assert (await api.get("/api/alerts", params=bad)).status_code == 422, bad

    # Past the cap, the counts are those of the newest (here 2 of 3) and say so.
    from iotmon.alerts import service

    monkeypatch.setattr(service, "COUNT_CAP", 2)
    meta = (await api.get("/api/alerts", params={"status": "all"})).json()["meta"]
    assert (meta["totalAlerts"], meta["countsCapped"]) == (2, True)
    assert (meta["criticalAlerts"], meta["lowAlerts"], meta["mediumAlerts"]) == (1, 1, 0)
    meta = (await api.get("/api/alerts", params={"status": "resolved"})).json()["meta"]
    assert (meta["totalAlerts"], meta["countsCapped"]) == (1, False)
    monkeypatch.undo()

    r = await api.get(f"/api/alerts/{a3}")
    d = r.json()["data"]
    assert d["resolvedBy"] == "someone"
    assert [(t["from"], t["to"], t["actor"]) for t in d["transitions"]] == [
        (None, "triggered", "system"),
        ("triggered", "resolved", "someone"),
    ]
    assert (await api.get("/api/alerts/987654")).status_code == 404
    assert (await api.get("/api/alerts/zero")).status_code == 422

    hist = (await api.get("/api/alerts/history")).json()
    assert [a["id"] for a in hist["data"]["alerts"]] == [a1, a2, a3]
    r = await api.get("/api/alerts/history.csv")
    lines = r.text.splitlines()
    assert lines[0].startswith("id,device_id,alert_type,severity,status")
    assert [int(line.split(",")[0]) for line in lines[1:]] == [a3, a2, a1]


async def test_acknowledge_and_resolve_as_operator(api: Api) -> None:
    alert_id = await open_alert(api.db, "device-004", "threshold_below", "high", datetime.now(UTC))
    seq_before = int(await api.redis.get("live:seq") or 0)
    r = await api.put(
        f"/api/alerts/{alert_id}/acknowledge", role="operator", json={"note": "on my way"}
    )
    assert r.status_code == 200, r.text
    a = r.json()["data"]
    assert (a["status"], a["acknowledgedBy"]) == ("acknowledged", "operator")
    assert a["acknowledgedAt"] is not None
    r = await api.put(f"/api/alerts/{alert_id}/acknowledge", role="operator")
    assert r.status_code == 409
    assert r.json()["error"]["code"] == "conflict"

    r = await api.put(f"/api/alerts/{alert_id}/resolve", role="operator", json={"note": "done"})
    assert r.status_code == 200
    assert (r.json()["data"]["status"], r.json()["data"]["resolvedBy"]) == ("resolved", "operator")
    assert (await api.put(f"/api/alerts/{alert_id}/resolve", role="admin")).status_code == 409
    assert (await api.put("/api/alerts/987654/resolve", role="operator")).status_code == 404
    r = await api.put(f"/api/alerts/{alert_id}/resolve", role="operator", json={"nope": 1})
    assert r.status_code == 422

    # Announced to the Socket.IO rooms (the replay buffer holds what was published), and no
    # longer in alerts:active.
    entries = await api.redis.xrange("live:replay:alerts", f"({seq_before}-0", "+")
    events = [
        (m["event"], m["data"][0]["alertId"])
        for _, f in entries
        if (m := orjson.loads(f[b"m"]))["data"][0].get("alertId") == alert_id
    ]
    assert events == [("alert-acknowledged", alert_id), ("alert-resolved", alert_id)]
    assert not await api.redis.hexists(keys.ACTIVE_ALERTS, str(alert_id))
    history = (await api.get(f"/api/alerts/{alert_id}")).json()["data"]["transitions"]
    assert [(t["to"], t["note"]) for t in history] == [
        ("triggered", "device-004 threshold_below"),
        ("acknowledged", "on my way"),
        ("resolved", "done"),
    ]


async def test_silences(api: Api) -> None:
    post = api.http.post
    r = await post(
        "/api/silences",
        headers=api.h("operator"),
        json={"deviceId": "device-002", "durationS": 3600, "reason": "pump swap"},
    )
    assert r.status_code == 201, r.text
    s = r.json()["data"]
    assert (s["deviceId"], s["alertType"], s["reason"], s["createdBy"]) == (
        "device-002",
        None,
        "pump swap",
        "operator",
    )
    r = await post(
        "/api/silences",
        headers=api.h("operator"),
        json={
            "type": "trend_warning",
            "endsAt": (datetime.now(UTC) + timedelta(hours=1)).isoformat(),
        },
    )
    assert r.status_code == 201
    listed = (await api.get("/api/silences")).json()["data"]["silences"]
    assert [x["id"] for x in listed] == [s["id"], r.json()["data"]["id"]]
    for bad in (
        {"durationS": 60},  # neither device nor type
        {"deviceId": "device-001"},  # no period
        {"deviceId": "device-001", "durationS": 60, "endsAt": "2030-01-01T00:00:00Z"},
        {"type": "no_such_type", "durationS": 60},
        {"deviceId": "device-001", "durationS": -5},
    ):
        r = await post("/api/silences", headers=api.h("operator"), json=bad)
        assert r.status_code == 422, bad
    r = await post(
        "/api/silences", headers=api.h("operator"), json={"deviceId": "ghost", "durationS": 60}
    )
    assert r.status_code == 404
    r = await api.http.delete(f"/api/silences/{s['id']}", headers=api.h("operator"))
    assert r.status_code == 200
    r = await api.http.delete(f"/api/silences/{s['id']}", headers=api.h("operator"))
    assert r.status_code == 404
    assert len((await api.get("/api/silences")).json()["data"]["silences"]) == 1


# --- metrics, analytics, system ---
async def test_metrics_and_analytics(api: Api) -> None:
    await open_alert(api.db, "device-001", "threshold_exceeded", "critical", datetime.now(UTC))
    r = await api.get("/api/metrics/dashboard")
    d = r.json()["data"]
    assert d["totalDevices"] >= 5
    assert d["activeAlerts"] == 1
    assert d["alertsBySeverity"] == {"low": 0, "medium": 0, "high": 0, "critical": 1}
    r = await api.get("/api/metrics/system")
    d = r.json()["data"]
    assert d["database"]["connections"] >= 1
    assert d["process"]["uptimeS"] >= 0
    assert "usedMemoryMiB" in d["redis"]

    hour = datetime.now(UTC).replace(minute=0, second=0, microsecond=0)
    for i, avg in enumerate((10.0, 12.0, 14.0)):
        sql(
            api.db,
            "INSERT INTO device_stats_hourly (device_id, hour_timestamp, avg_value, min_value,"
            " max_value, count_readings, std_deviation) VALUES (%s, %s, %s, %s, %s, %s, %s)",
            "device-003",
            hour - timedelta(hours=3 - i),
            avg,
            avg - 1,
            avg + 1,
            3600,
            0.5,
        )
    r = await api.get("/api/analytics/trends/device-003", params={"hours": 6})
    d = r.json()["data"]
    assert [p["avg"] for p in d["hourly"]] == [10.0, 12.0, 14.0]
    assert d["slopePerHour"] == pytest.approx(2.0)
    assert d["change"] == pytest.approx(4.0)
    assert r.json()["meta"]["cached"] is False
    again = await api.get("/api/analytics/trends/device-003", params={"hours": 6})
    assert again.json()["meta"]["cached"] is True
    assert again.json()["data"] == d
    assert (await api.get("/api/analytics/trends/ghost")).status_code == 404
    assert (await api.get("/api/analytics/trends/device-003?hours=0")).status_code == 422

    # 6 hours: the 5 complete ones before this one (3 rolled up), and this one so far (empty)
    before = datetime.now(UTC)
    r = await api.get("/api/analytics/summary", params={"hours": 6})
    after = datetime.now(UTC)
    d = r.json()["data"]
    dev3 = next(x for x in d["devices"] if x["deviceId"] == "device-003")
    assert (dev3["readings"], dev3["avg"], dev3["min"], dev3["max"]) == (10800, 12.0, 9.0, 15.0)
    # reported in 3 of the 5 complete hours and not in the current one's elapsed part
    elapsed = [(t - hour) / timedelta(hours=1) for t in (before, after)]
    assert 3 / (5 + elapsed[1]) - 1e-4 <= dev3["availability"] <= 3 / (5 + elapsed[0]) + 1e-4
    assert d["heatmap"]["devices"] == ["device-003"]
    assert len(d["heatmap"]["hours"]) == 6
    assert d["heatmap"]["hours"][-1] == hour.isoformat(timespec="milliseconds").replace(
        "+00:00", "Z"
    )
    assert d["heatmap"]["values"][0] == [None, None, 10.0, 12.0, 14.0, None]
    assert d["alerts"]["byType"] == {"threshold_exceeded": 1}


async def test_health_status_users_docs_and_headers(api: Api) -> None:
    r = await api.http.get("/api/health")  # no token: load balancers ask it
    assert r.status_code == 200
    h = r.json()
    assert h["status"] == "healthy"
    assert set(h["dependencies"]) == {"database", "redis"}
    assert all(dep["responseTime"] >= 0 for dep in h["dependencies"].values())

    r = await api.get("/api/status")
    assert r.json()["data"]["devices"] == 5
    assert r.json()["data"]["user"] == {"username": "viewer", "role": "viewer"}

    r = await api.http.post(
        "/api/users",
        headers=api.h("admin"),
        json={"username": "night-shift", "password": "long-enough", "role": "operator"},
    )
    assert r.status_code == 201
    r = await api.http.post(
        "/api/users",
        headers=api.h("admin"),
        json={"username": "night-shift", "password": "long-enough"},
    )
    assert r.status_code == 409
    r = await api.http.post(
        "/api/users", headers=api.h("admin"), json={"username": "x", "password": "short"}
    )
    assert r.status_code == 422
    r = await api.put("/api/users/night-shift/role", json={"role": "viewer"})
    assert r.json()["data"] == {"username": "night-shift", "role": "viewer"}
    assert (await api.put("/api/users/ghost/role", json={"role": "viewer"})).status_code == 404
    users = (await api.get("/api/users", role="admin")).json()["data"]["users"]
    assert {u["username"]: u["role"] for u in users}["night-shift"] == "viewer"
    r = await api.http.post(
        "/api/auth/token", json={"username": "night-shift", "password": "long-enough"}
    )
    assert r.json()["data"]["role"] == "viewer"

    r = await api.http.get("/api/openapi.json")
    paths = r.json()["paths"]
    for path in (
        "/api/devices",
        "/api/devices/{device_id}",
        "/api/devices/{device_id}/current",
        "/api/devices/{device_id}/history",
        "/api/devices/{device_id}/history.csv",
        "/api/devices/{device_id}/config",
        "/api/alerts",
        "/api/alerts/{alert_id}",
        "/api/alerts/{alert_id}/acknowledge",
        "/api/alerts/{alert_id}/resolve",
        "/api/alerts/history",
        "/api/alerts/history.csv",
        "/api/metrics/dashboard",
        "/api/metrics/system",
        "/api/analytics/trends/{device_id}",
        "/api/analytics/summary",
        "/api/health",
        "/api/status",
        "/api/auth/token",
        "/api/silences",
        "/api/silences/{silence_id}",
        "/api/users",
    ):
        assert path in paths, path
    assert (await api.http.get("/api/docs")).status_code == 200

    r = await api.get("/api/devices")
    assert r.headers["x-content-type-options"] == "nosniff"
    assert r.headers["x-frame-options"] == "DENY"
    assert "frame-ancestors 'none'" in r.headers["content-security-policy"]
    r = await api.http.options(
        "/api/devices",
        headers={"Origin": "http://plant.example", "Access-Control-Request-Method": "GET"},
    )
    assert r.status_code == 200
    assert r.headers["access-control-allow-origin"] in ("*", "http://plant.example")

    metrics = (await api.http.get("/metrics")).text
    assert 'route="/api/devices"' in metrics
    assert "iotmon_http_request_seconds_bucket" in metrics


async def test_rate_limit_is_shared_by_web_processes_and_answers_429(
    api: Api, settings: Settings, database_url: str
) -> None:
    """Two web roles (two apps, as two processes would be) on one Redis, limit 5 a minute:
    a client's sixth request is refused whichever process gets it."""
    limit = settings.model_copy(update={"rate_limit_per_minute": 5})
    api.role.api.rate_limit.settings = limit
    other, other_app = web_app(limit, database_url)
    stop = asyncio.Event()
    task = asyncio.create_task(other.run(stop))
    try:
        for _attempt in range(3):  # a fixed one-minute window: retry if a minute turns mid-test
            window = int(time.time() // 60)
            ip = f"10.9.{random.randint(0, 255)}.{random.randint(1, 254)}"
            apps = [api.http._transport.app, other_app]  # type: ignore[attr-defined]
            clients = [
                httpx.AsyncClient(
                    transport=httpx.ASGITransport(app=app, client=(ip, 1)), base_url="http://t"
                )
                for app in apps
            ]
            codes, last = [], None
            for i in range(7):
                last = await clients[i % 2].get("/api/devices", headers=api.h())
                codes.append(last.status_code)
            health = await clients[1].get("/api/health")
            for c in clients:
                await c.aclose()
            if int(time.time() // 60) == window:
                break
        assert codes == [200] * 5 + [429, 429]
        assert last is not None
        assert 1 <= int(last.headers["retry-after"]) <= 61
        assert last.json()["error"]["code"] == "rate_limited"
        assert "retry in" in last.json()["error"]["message"]
        assert health.status_code == 200  # never limited
        # Another client address is not affected.
        assert (await api.get("/api/devices")).status_code == 200
    finally:
        stop.set()
        await task


async def test_the_dashboard_is_served_with_its_routes_and_cache_headers(
    settings: Settings, database_url: str, tmp_path: Any
) -> None:
    """``dashboard/dist`` at ``/``: hashed assets cached for a year and compressed, the
    page itself revalidated, client-side routes answered with the page, nothing outside."""
    (tmp_path / "assets").mkdir()
    (tmp_path / "index.html").write_text("<!doctype html><title>iotmon</title>")
    code = "export const x = 1;\n" * 200
    (tmp_path / "assets" / "index-AbC123.js").write_text(code)
    (tmp_path.parent / "secret.txt").write_text("not for the web")
    _, app = web_app(settings.model_copy(update={"dashboard_dir": tmp_path}), database_url)
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://test") as http:
        for path in ("/", "/devices/device-001", "/alerts?status=active"):
            r = await http.get(path)
            assert r.status_code == 200, path
            assert r.text.startswith("<!doctype html>")
            assert r.headers["cache-control"] == "no-cache"
        r = await http.get("/assets/index-AbC123.js", headers={"Accept-Encoding": "gzip"})
        assert r.status_code == 200
        assert r.text == code
        assert r.headers["content-encoding"] == "gzip"
        assert r.headers["cache-control"] == "public, max-age=31536000, immutable"
        assert (await http.get("/assets/index-Gone99.js")).status_code == 404
        assert (await http.get("/..%2fsecret.txt")).text.startswith("<!doctype html>")
        r = await http.get("/api/nothing-here")
        assert r.status_code == 404
        assert r.json()["error"]["message"] == "no such endpoint: GET /api/nothing-here"
