"""Finding 1, property-based: hypothesis tries the edges of every field the API writes
(silences, device configuration) against the running web role; whatever it sends, the answer
is never a 5xx, what was written is within bounds, and the alerts role (running beside, and an
engine run here on the same rows) still works."""

from __future__ import annotations

import asyncio
import json
import math
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import httpx
import psycopg
import redis.asyncio as aioredis
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from iotmon.alerts import lifecycle
from iotmon.alerts.engine import AlertEngine
from iotmon.alerts.models import TYPES
from iotmon.alerts.notify import Notifier, NotifyConfig
from tests.security.conftest import System

EXAMPLES = 120
DEVICES = ["device-001", "device-002", "device-003", "device-004", "device-005"]

zones = st.one_of(
    st.none(),
    st.builds(
        lambda m: timezone(timedelta(minutes=m)), st.integers(min_value=-23 * 60, max_value=23 * 60)
    ),
)
dates = st.one_of(
    st.datetimes(
        min_value=datetime(1, 1, 1), max_value=datetime(9999, 12, 31, 23, 59, 59), timezones=zones
    ).map(lambda d: d.isoformat()),
    st.datetimes(
        min_value=datetime.now() - timedelta(days=400),
        max_value=datetime.now() + timedelta(days=800),
        timezones=zones,
    ).map(lambda d: d.isoformat()),
    st.sampled_from(
        [
            "9999-12-31T23:59:59-01:00",
            "9999-12-31T23:59:59.999999-23:59",
            "0001-01-01T00:00:00+01:00",
            "0001-01-01T00:00:00+23:59",
            "infinity",
            "-infinity",
            "2026-02-30T00:00:00Z",
            "",
            "now",
        ]
    ),
    st.integers(min_value=-(2**70), max_value=2**70),
)
numbers = st.one_of(
    st.none(),
    st.floats(allow_nan=True, allow_infinity=True),
    st.integers(min_value=-(2**80), max_value=2**80),
    st.sampled_from([1e9, -1e9, 1e9 + 1, -1e308, 1e308, 5e-324, 0.0, -0.0]),
)
texts = st.one_of(
    st.none(), st.text(max_size=120), st.sampled_from(["a\x00b", "x" * 101, "\ud800"])
)


def _optional(fields: dict[str, Any]) -> st.SearchStrategy[dict[str, Any]]:
    return st.fixed_dictionaries({}, optional=fields)


silences = _optional(
    {
        "deviceId": st.one_of(st.sampled_from(DEVICES), st.text(max_size=80)),
        "type": st.one_of(st.sampled_from(list(TYPES)), st.text(max_size=30)),
        "startsAt": dates,
        "endsAt": dates,
        "durationS": numbers,
        "reason": texts,
    }
)
# and bodies near the valid ones, so that some are written (and read back by the engine)
near_silences = st.fixed_dictionaries(
    {"deviceId": st.sampled_from(DEVICES)},
    optional={
        "type": st.sampled_from(list(TYPES)),
        "startsAt": st.timedeltas(
            min_value=timedelta(days=-400), max_value=timedelta(days=400)
        ).map(lambda d: (datetime.now(UTC) + d).isoformat()),
        "reason": texts,
    },
).flatmap(
    lambda body: st.one_of(
        st.floats(min_value=-10, max_value=400 * 86400).map(lambda s: body | {"durationS": s}),
        st.timedeltas(min_value=timedelta(days=-10), max_value=timedelta(days=800)).map(
            lambda d: body | {"endsAt": (datetime.now(UTC) + d).isoformat()}
        ),
    )
)
configs = _optional(
    {
        "normalMin": numbers,
        "normalMax": numbers,
        "alertMin": numbers,
        "alertMax": numbers,
        "offlineTimeoutS": numbers,
        "intervalMs": numbers,
        "location": texts,
        "unit": texts,
        "status": st.one_of(
            st.sampled_from(["active", "inactive", "maintenance", "unregistered"]), texts
        ),
    }
)


def _send(
    http: httpx.Client, method: str, path: str, body: dict[str, Any], h: dict[str, str]
) -> int:
    # Python's json writes NaN/Infinity and lone surrogates as they are: the parser meets them
    try:
        content = json.dumps(body).encode("utf-8", "surrogatepass")
    except ValueError:
        content = json.dumps(body, ensure_ascii=True).encode()
    r = http.request(
        method, path, content=content, headers=h | {"content-type": "application/json"}
    )
    assert r.status_code < 500, (body, r.status_code, r.text[:500])
    return r.status_code


def test_every_writable_field_at_its_edges(system: System) -> None:
    web = system.start("web")
    alerts = system.start("alerts")
    operator = system.h(web, "operator")
    admin = system.h(web, "admin")
    written = {"silences": 0, "configs": 0}
    with httpx.Client(base_url=web.url, timeout=30) as http:

        @settings(
            max_examples=EXAMPLES,
            deadline=None,
            suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
        )
        @given(body=st.one_of(silences, near_silences))
        def silence(body: dict[str, Any]) -> None:
            if _send(http, "POST", "/api/silences", body, operator) == 201:
                written["silences"] += 1

        @settings(
            max_examples=EXAMPLES,
            deadline=None,
            suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
        )
        @given(device=st.sampled_from(DEVICES), body=configs)
        def config(device: str, body: dict[str, Any]) -> None:
            if _send(http, "PUT", f"/api/devices/{device}/config", body, admin) == 200:
                written["configs"] += 1

        silence()
        config()
        # the readers still read
        for path in ("/api/silences?includeExpired=true", "/api/devices", "/api/alerts"):
            assert http.get(path, headers=operator).status_code == 200, path
    assert written["silences"], written
    assert written["configs"], written

    # what was written is within bounds
    bad = system.sql(
        "SELECT id FROM silences WHERE ends_at <= starts_at"
        " OR ends_at - starts_at > interval '366 days'"
        " OR abs(extract(epoch FROM starts_at - now())) > 367 * 86400"
    )
    assert not bad, bad
    for row in system.sql(
        "SELECT device_id, alert_min, normal_min, normal_max, alert_max, offline_timeout_s"
        " FROM devices"
    ):
        values = [v for v in row[1:5] if v is not None]
        assert all(math.isfinite(v) and abs(v) <= 1e9 for v in values), row
        assert values == sorted(values), row
        assert row[5] is None or 0 < row[5] <= 86400, row

    # every role still runs, and an engine on these rows does its work
    assert web.alive(), web.text()[-2000:]
    assert alerts.alive(), alerts.text()[-2000:]
    assert httpx.get(f"{alerts.url}/health", timeout=10).status_code == 200
    asyncio.run(_engine_runs(system))


async def _engine_runs(system: System) -> None:
    conn = await psycopg.AsyncConnection.connect(system.db, autocommit=True)
    r = aioredis.Redis.from_url(system.redis_url)
    try:
        engine = AlertEngine(conn=conn, redis=r, notifier=Notifier(NotifyConfig()))
        await engine.check_offline()
        for device in DEVICES:
            await engine._silenced(device, "threshold_exceeded")
            await engine._span(device)
        assert await lifecycle.active_silences(conn, datetime.now(UTC)) is not None
        rows = await lifecycle.list_silences(conn, include_expired=True)
        total = (await (await conn.execute("SELECT count(*) FROM silences")).fetchone())[0]  # type: ignore[index]
        assert len(rows) == total
    finally:
        await r.aclose()
        await conn.close()
