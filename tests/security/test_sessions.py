"""Finding 4: sessions are revocable. Demotion, deletion, a password change (API and CLI) and
logout end the user's tokens, and each revocation is published for the Socket.IO servers."""

from __future__ import annotations

import subprocess
import sys
import threading
import time

import httpx
import orjson
import redis

from iotmon.web import auth
from tests.security.conftest import PASSWORD, System, child_env


def _listen(url: str) -> tuple[list[dict[str, str]], threading.Event]:
    """Messages on the revocation channel, collected in the background."""
    got: list[dict[str, str]] = []
    ready = threading.Event()

    def run() -> None:
        r = redis.Redis.from_url(url)
        ps = r.pubsub()
        ps.subscribe(auth.REVOKED_CHANNEL)
        ready.set()
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and len(got) < 10:
            m = ps.get_message(timeout=0.5)
            if m and m["type"] == "message":
                got.append(orjson.loads(m["data"]))

    threading.Thread(target=run, daemon=True).start()
    ready.wait(5)
    return got, ready


def _wait_for(got: list[dict[str, str]], name: str) -> None:
    deadline = time.monotonic() + 5
    while {"username": name} not in got:
        assert time.monotonic() < deadline, got
        time.sleep(0.05)


def test_a_demoted_admin_cannot_use_the_old_token(system: System) -> None:
    web = system.start("web")
    got, _ = _listen(system.redis_url)
    with httpx.Client(base_url=web.url, timeout=10) as http:
        admin = system.h(web, "admin")
        r = http.post(
            "/api/users",
            json={"username": "boss", "password": PASSWORD, "role": "admin"},
            headers=admin,
        )
        assert r.status_code == 201, r.text
        boss = {"Authorization": f"Bearer {system.token(web, 'boss')}"}
        assert http.get("/api/users", headers=boss).status_code == 200
        r = http.put("/api/users/boss/role", json={"role": "viewer"}, headers=admin)
        assert r.status_code == 200, r.text
        _wait_for(got, "boss")
        # the old token: refused outright, so it cannot create an admin and promote itself
        r = http.post(
            "/api/users",
            json={"username": "boss2", "password": PASSWORD, "role": "admin"},
            headers=boss,
        )
        assert r.status_code == 401, r.text
        assert (
            http.put("/api/users/boss/role", json={"role": "admin"}, headers=boss).status_code
            == 401
        )
        assert http.get("/api/devices", headers=boss).status_code == 401
        # a new login gets the new role
        fresh = {"Authorization": f"Bearer {system.token(web, 'boss')}"}
        assert http.get("/api/devices", headers=fresh).status_code == 200
        assert http.get("/api/users", headers=fresh).status_code == 403


def test_deleting_a_user_or_changing_a_password_ends_the_sessions(system: System) -> None:
    web = system.start("web")
    got, _ = _listen(system.redis_url)
    with httpx.Client(base_url=web.url, timeout=10) as http:
        admin = system.h(web, "admin")
        for name in ("gone", "moved"):
            r = http.post(
                "/api/users",
                json={"username": name, "password": PASSWORD, "role": "operator"},
                headers=admin,
            )
            assert r.status_code == 201, r.text
        gone = {"Authorization": f"Bearer {system.token(web, 'gone')}"}
        moved = {"Authorization": f"Bearer {system.token(web, 'moved')}"}
        assert http.get("/api/devices", headers=gone).status_code == 200
        assert http.delete("/api/users/gone", headers=admin).status_code == 200
        _wait_for(got, "gone")
        assert http.get("/api/devices", headers=gone).status_code == 401
        # a user changes their own password: their other sessions end
        r = http.put(
            "/api/users/moved/password",
            json={"password": "new-password-1", "currentPassword": PASSWORD},
            headers=moved,
        )
        assert r.status_code == 200, r.text
        _wait_for(got, "moved")
        assert http.get("/api/devices", headers=moved).status_code == 401
        assert system.token(web, "moved", "new-password-1")
        # a user cannot change another's password, nor their own without the current one
        viewer = system.h(web, "viewer")
        assert (
            http.put(
                "/api/users/moved/password", json={"password": "x" * 10}, headers=viewer
            ).status_code
            == 403
        )
        assert (
            http.put(
                "/api/users/viewer/password", json={"password": "x" * 10}, headers=viewer
            ).status_code
            == 422
        )


def test_logout_ends_the_token(system: System) -> None:
    web = system.start("web")
    got, _ = _listen(system.redis_url)
    token = system.token(web, "viewer")
    h = {"Authorization": f"Bearer {token}"}
    with httpx.Client(base_url=web.url, timeout=10) as http:
        assert http.get("/api/devices", headers=h).status_code == 200
        assert http.post("/api/auth/logout", headers=h).status_code == 200
        _wait_for(got, "viewer")
        for path in ("/api/devices", "/api/status", "/api/alerts"):
            assert http.get(path, headers=h).status_code == 401, path
        assert http.post("/api/auth/logout", headers=h).status_code == 401


def test_cli_changes_end_sessions_too(system: System) -> None:
    web = system.start("web")
    got, _ = _listen(system.redis_url)
    h = {"Authorization": f"Bearer {system.token(web, 'operator')}"}
    assert httpx.get(f"{web.url}/api/devices", headers=h, timeout=10).status_code == 200
    out = subprocess.run(
        [
            sys.executable,
            "-m",
            "iotmon",
            "users",
            "set-password",
            "operator",
            "--password",
            "another-pass-1",
        ],
        env=child_env(system.env),
        capture_output=True,
        timeout=60,
    )
    assert out.returncode == 0, out.stderr.decode()
    _wait_for(got, "operator")
    deadline = time.monotonic() + auth.SESSION_CACHE_S + 2  # another process: within the cache
    while httpx.get(f"{web.url}/api/devices", headers=h, timeout=10).status_code != 401:
        assert time.monotonic() < deadline
        time.sleep(0.2)
