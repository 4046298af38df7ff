"""Findings 2 and 3: anonymous logins must not stall the API; the rate limit must not be
bypassed with X-Forwarded-For; failed logins back off."""

from __future__ import annotations

import asyncio
import ipaddress
import os
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import httpx
import pytest

from iotmon.web import login
from tests.security.conftest import PASSWORD, System

LOGINS = int(os.environ.get("SECURITY_LOGINS", "250"))


def _probe(url: str, headers: dict[str, str], stop: threading.Event) -> list[float]:
    """Authenticated GET /api/alerts every 100 ms, from a thread and a client of its own (the
    flood's client must not add its own delays): their latencies."""
    latencies = []
    with httpx.Client(base_url=url, timeout=60) as http:
        while not stop.is_set():
            t0 = time.perf_counter()
            r = http.get("/api/alerts", headers=headers)
            assert r.status_code == 200, r.text
            latencies.append(time.perf_counter() - t0)
            time.sleep(0.1)
    return latencies


async def _logins(url: str, n: int) -> dict[int, int]:
    """``n`` concurrent logins with wrong passwords: their status counts."""
    statuses: dict[int, int] = {}
    limits = httpx.Limits(max_connections=n, max_keepalive_connections=n)
    async with httpx.AsyncClient(base_url=url, timeout=120, limits=limits) as http:

        async def one(i: int) -> None:
            r = await http.post(
                "/api/auth/token", json={"username": f"user{i % 20}", "password": "wrong-password"}
            )
            statuses[r.status_code] = statuses.get(r.status_code, 0) + 1

        await asyncio.gather(*(one(i) for i in range(n)))
    return statuses


def flood(url: str, headers: dict[str, str], n: int) -> tuple[list[float], dict[int, int]]:
    stop = threading.Event()
    with ThreadPoolExecutor(1) as pool:
        probing = pool.submit(_probe, url, headers, stop)
        time.sleep(0.5)
        statuses = asyncio.run(_logins(url, n))
        stop.set()
        return probing.result(), statuses


def test_a_login_flood_does_not_stall_the_api(system: System) -> None:
    web = system.start("web")
    headers = system.h(web, "viewer")
    latencies, statuses = flood(web.url, headers, LOGINS)
    print(
        f"GET /api/alerts during {LOGINS} logins: max {max(latencies) * 1000:.0f} ms,"
        f" {len(latencies)} probes; logins {statuses}"
    )
    assert 500 not in statuses, statuses
    # 503 (busy, at once) and 429 (back-off) are the expected refusals; 401 the rest
    assert set(statuses) <= {401, 429, 503}, statuses
    # before: 5.5-10 s with 100 logins, 25-29 s with 250 (the pool held while argon2 ran in
    # the shared thread pool); now the excess is refused at once and reads go on (bounds
    # generous for a 2-core machine that also runs the flood's client)
    latencies.sort()
    assert latencies[len(latencies) // 2] < 0.5, latencies
    assert latencies[-1] < 5.0, latencies
    t0 = time.perf_counter()
    assert httpx.get(f"{web.url}/api/health", timeout=10).status_code == 200
    assert time.perf_counter() - t0 < 1.0


def test_failed_logins_lock_the_account_out_even_with_the_right_password(system: System) -> None:
    web = system.start("web")
    url = f"{web.url}/api/auth/token"
    codes = []
    for _ in range(8):
        r = httpx.post(url, json={"username": "operator", "password": "guess-guess"}, timeout=10)
        codes.append(r.status_code)
    assert codes[:5] == [401] * 5, codes
    assert 429 in codes, codes
    # rotating X-Forwarded-For changes nothing (the account is locked whatever the address)
    r = httpx.post(
        url,
        json={"username": "operator", "password": PASSWORD},
        headers={"X-Forwarded-For": "203.0.113.7"},
        timeout=10,
    )
    assert r.status_code == 429, r.text
    assert int(r.headers["Retry-After"]) >= 1
    # another account is not affected
    assert (
        httpx.post(url, json={"username": "viewer", "password": PASSWORD}, timeout=10).status_code
        == 200
    )


def test_x_forwarded_for_does_not_bypass_the_rate_limit(system: System) -> None:
    web = system.start("web", IOTMON_RATE_LIMIT_PER_MINUTE="20")
    # the limiter counts per address in Redis: this test's database's own prefix is not in the
    # key, so start from a clean count for loopback
    codes = []
    with httpx.Client(base_url=web.url, timeout=10) as http:
        for i in range(45):
            r = http.get("/api/status", headers={"X-Forwarded-For": f"198.51.100.{i}"})
            codes.append(r.status_code)
    assert codes.count(429) >= 20, codes


@pytest.mark.parametrize(
    ("peer", "xff", "trusted", "expected"),
    [
        ("127.0.0.1", "1.2.3.4", "", "127.0.0.1"),  # no trusted proxy: the header is ignored
        ("10.0.0.5", "1.2.3.4", "127.0.0.1", "10.0.0.5"),  # peer is not a trusted proxy
        ("127.0.0.1", "1.2.3.4", "127.0.0.1", "1.2.3.4"),
        ("127.0.0.1", "6.6.6.6, 1.2.3.4", "127.0.0.1", "1.2.3.4"),  # the spoofed left part
        ("127.0.0.1", "1.2.3.4, 10.0.0.2", "127.0.0.0/8, 10.0.0.0/8", "1.2.3.4"),
        ("127.0.0.1", "not-an-ip", "127.0.0.1", "127.0.0.1"),
    ],
)
def test_client_address_believes_only_trusted_proxies(
    peer: str, xff: str, trusted: str, expected: str
) -> None:
    scope = {"client": (peer, 1234), "headers": [(b"x-forwarded-for", xff.encode())]}
    assert login.client_address(scope, login.parse_networks(trusted)) == expected
    assert all(isinstance(n, ipaddress.IPv4Network) for n in login.parse_networks(trusted))
