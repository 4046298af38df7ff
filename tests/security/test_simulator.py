"""Finding 5: the simulator's control endpoint is not anonymous and never approved for
another origin."""

from __future__ import annotations

import httpx

from tests.security.conftest import System

BODY = {"deviceId": "device-001", "kind": "offline", "durationS": 86400}


def test_the_control_endpoint_needs_an_operator_token(system: System) -> None:
    web = system.start("web")
    sim = system.start("simulator")  # IOTMON_DATABASE_URL is set: it checks tokens
    url = f"{sim.url}/simulator/scenarios"
    assert httpx.post(url, json=BODY, timeout=10).status_code == 401
    assert (
        httpx.post(url, json=BODY, headers=system.h(web, "viewer"), timeout=10).status_code == 403
    )
    assert httpx.delete(f"{url}/device-001", timeout=10).status_code == 401
    r = httpx.post(url, json=BODY | {"durationS": 5}, headers=system.h(web, "operator"), timeout=10)
    assert r.status_code == 201, r.text


def test_the_control_endpoint_is_off_without_a_way_to_check_tokens(system: System) -> None:
    env = {k: v for k, v in system.env.items() if k != "IOTMON_DATABASE_URL"}
    saved, system.env = system.env, env
    try:
        sim = system.start("simulator", IOTMON_SIMULATOR_CONTROL="1")  # not embedded: ignored
    finally:
        system.env = saved
    assert httpx.post(f"{sim.url}/simulator/scenarios", json=BODY, timeout=10).status_code == 403


def test_cors_never_approves_it(system: System) -> None:
    web = system.start("web", IOTMON_CORS_ORIGINS='["*"]')
    evil = {
        "Origin": "https://evil.example",
        "Access-Control-Request-Method": "POST",
        "Access-Control-Request-Headers": "content-type",
    }
    for base in (web.url, system.start("simulator").url):
        r = httpx.options(f"{base}/simulator/scenarios", headers=evil, timeout=10)
        assert "access-control-allow-origin" not in r.headers, (base, r.headers)
        r = httpx.post(
            f"{base}/simulator/scenarios",
            json=BODY,
            headers={"Origin": "https://evil.example"},
            timeout=10,
        )
        assert "access-control-allow-origin" not in r.headers
        assert r.status_code in (401, 403, 404, 405)
    # the API itself still answers CORS as configured
    r = httpx.options(
        f"{web.url}/api/devices",
        headers=evil | {"Access-Control-Request-Headers": "authorization"},
        timeout=10,
    )
    assert r.headers.get("access-control-allow-origin") in ("*", "https://evil.example")
