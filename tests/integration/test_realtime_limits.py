"""The Socket.IO service against hostile and misbehaving clients, on a real `iotmon run web`:
raw Engine.IO/Socket.IO garbage before CONNECT (websocket frames and polling bodies), sessions
that never send CONNECT, oversized messages, replay floods, tokens that expire mid-session
(and ``refresh-token``), revoked sessions (``iotmon:sessions:revoked``), and a Redis that goes
away (the client is told to retry, never left waiting).

Nothing here waits a fixed time: every wait polls a condition against a deadline.
"""

from __future__ import annotations

import asyncio
import contextlib
import re
import signal
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path
from typing import Any, TypeVar

import aiohttp
import httpx
import orjson
import psycopg
import pytest
import redis
import socketio

from iotmon.config import Settings
from iotmon.users.service import create_user
from iotmon.web import auth
from tests.integration.helpers import free_port

DEADLINE_S = 30.0
PASSWORD = "correct-horse-battery"  # noqa: S105 (a test user's)
REVOKED = "iotmon:sessions:revoked"
T = TypeVar("T")


class Web:
    def __init__(self, env: dict[str, str], log: Path) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.ws = f"ws://127.0.0.1:{self.port}/socket.io/?EIO=4&transport=websocket"
        self.log = log
        with log.open("wb") as out:
            self.popen = subprocess.Popen(
                [sys.executable, "-m", "iotmon", "run", "web"],
                env=env | {"IOTMON_HTTP_PORT": str(self.port)},
                stdout=out,
                stderr=subprocess.STDOUT,
            )

    def text(self) -> str:
        return self.log.read_text(errors="replace")

    def tail(self, chars: int = 4000) -> str:
        return f"--- web (rc {self.popen.poll()}) ---\n{self.text()[-chars:]}"

    async def ready(self) -> None:
        deadline = time.monotonic() + 60
        async with httpx.AsyncClient(timeout=5) as http:
            while True:
                if self.popen.poll() is not None:
                    pytest.fail(f"web exited\n{self.tail()}")
                with contextlib.suppress(httpx.HTTPError):
                    if (await http.get(f"{self.url}/health")).status_code == 200:
                        return
                if time.monotonic() > deadline:
                    pytest.fail(f"web not healthy within 60 s\n{self.tail()}")
                await asyncio.sleep(0.1)

    async def token(self, user: str) -> str:
        async with httpx.AsyncClient(timeout=10) as http:
            r = await http.post(
                f"{self.url}/api/auth/token", json={"username": user, "password": PASSWORD}
            )
        assert r.status_code == 200, r.text
        return str(r.json()["data"]["accessToken"])

    def no_tracebacks(self) -> None:
        assert "Traceback" not in self.text(), self.tail(8000)

    def stop(self) -> None:
        if self.popen.poll() is None:
            self.popen.send_signal(signal.SIGTERM)
        try:
            self.popen.wait(30)
        except subprocess.TimeoutExpired:
            self.popen.kill()
            self.popen.wait(10)
            pytest.fail(f"web did not stop within 30 s of SIGTERM\n{self.tail()}")
        assert self.popen.returncode == 0, self.tail()


@pytest.fixture
def start_web(
    settings: Settings, subprocess_env: dict[str, str], tmp_path: Path
) -> Iterator[Callable[..., Web]]:
    made: list[Web] = []
    assert settings.database_url is not None
    with psycopg.connect(settings.database_url.get_secret_value(), autocommit=True) as conn:
        for user in ("lim-viewer", "lim-other"):
            create_user(conn, user, PASSWORD, "viewer")

    def start(**env: str) -> Web:
        extra = {"IOTMON_RATE_LIMIT_PER_MINUTE": "0"} | {
            f"IOTMON_{k.upper()}": v for k, v in env.items()
        }
        made.append(Web(subprocess_env | extra, tmp_path / f"web-{len(made)}.log"))
        return made[-1]

    yield start
    for web in made:
        if web.popen.poll() is None:
            web.popen.kill()
            web.popen.wait(10)


class Client:
    def __init__(self) -> None:
        self.sio = socketio.AsyncClient(reconnection=False)
        self.events: list[tuple[str, Any]] = []
        self.refusals: list[Any] = []
        self.gone = asyncio.Event()
        self.sio.on("*", self._record)
        self.sio.on("connect_error", self._refused)
        self.sio.on("disconnect", self._gone)

    async def _record(self, event: str, data: Any = None) -> None:
        self.events.append((event, data))

    async def _refused(self, data: Any = None) -> None:
        self.refusals.append(data)

    async def _gone(self, *_: Any) -> None:
        self.gone.set()

    async def connect(self, web: Web, token: str, **auth_extra: Any) -> None:
        await self.sio.connect(
            web.url,
            auth={"token": token, **auth_extra},
            transports=["websocket"],
            wait_timeout=DEADLINE_S,
        )

    async def call(self, event: str, data: Any = None) -> Any:
        return await self.sio.call(event, data, timeout=DEADLINE_S)

    def errors(self, code: str) -> list[dict[str, Any]]:
        return [d for e, d in self.events if e == "error" and d.get("code") == code]


@pytest.fixture
async def clients() -> AsyncIterator[Callable[[], Client]]:
    made: list[Client] = []

    def make() -> Client:
        made.append(Client())
        return made[-1]

    yield make
    for c in made:
        with contextlib.suppress(Exception):
            await c.sio.disconnect()


async def until(check: Callable[[], T | None], what: str, web: Web) -> T:
    deadline = time.monotonic() + DEADLINE_S
    while True:
        value = check()
        if value:
            return value
        if web.popen.poll() is not None:
            pytest.fail(f"web exited while waiting for {what}\n{web.tail()}")
        if time.monotonic() > deadline:
            pytest.fail(f"not within {DEADLINE_S:g} s: {what}\n{web.tail()}")
        await asyncio.sleep(0.02)


async def closed(ws: aiohttp.ClientWebSocketResponse) -> bool:
    """Whether the server closed this websocket (within the deadline)."""
    with contextlib.suppress(TimeoutError):
        async with asyncio.timeout(DEADLINE_S):
            while True:
                msg = await ws.receive()
                if msg.type in (
                    aiohttp.WSMsgType.CLOSE,
                    aiohttp.WSMsgType.CLOSED,
                    aiohttp.WSMsgType.CLOSING,
                    aiohttp.WSMsgType.ERROR,
                ):
                    return True
    return ws.closed


# Garbage an Engine.IO/Socket.IO server may be sent before any CONNECT.
WEBSOCKET_GARBAGE: list[str | bytes] = [
    "",
    "x",
    "not a packet at all",
    "4",  # an empty Socket.IO message
    "4x",
    "49",  # an unknown Socket.IO packet type
    "42",  # an event before CONNECT
    '42["subscribe-device",{"deviceId":"device-001"}]',
    "43",  # an ack nobody asked for
    "44{}",  # CONNECT_ERROR from a client
    "45-[]",  # a binary event announcing attachments
    "451-[]",
    "4" + "0" * 5000,
    '40{"token":',  # CONNECT with broken JSON
    "40" + "[" * 5000 + "]" * 5000,  # deeper than any JSON parser here goes
    "4/nope,",  # a namespace that does not exist
    "0",  # OPEN from a client
    "1",  # CLOSE without anything
    "7",
    "9999",
    '4{"a":1e999}',
    b"\x00\x01\x02",
    b"\xff" * 100,
]
POLLING_GARBAGE: list[str] = [
    "",
    "garbage",
    "4",
    "4\x1e4\x1e4",
    "\x1e\x1e\x1e",
    "42[",
    '42["ping"',
    "99:abc",
    "b4AAAA",
    "bnot-base64!",
    "45-[]",
    "4" + "[" * 3000,
]


async def test_garbage_before_connect_neither_floods_the_log_nor_stops_the_server(
    start_web: Callable[..., Web], clients: Callable[[], Client]
) -> None:
    web = start_web()
    await web.ready()
    rounds = 20  # each kind of garbage many times: a traceback per frame would show
    async with aiohttp.ClientSession() as http:
        for _ in range(rounds):
            for frame in WEBSOCKET_GARBAGE:
                async with http.ws_connect(web.ws) as ws:
                    opened = await ws.receive_str(timeout=DEADLINE_S)
                    assert opened.startswith("0{"), opened
                    if isinstance(frame, bytes):
                        await ws.send_bytes(frame)
                    else:
                        await ws.send_str(frame)
                    with contextlib.suppress(ConnectionError):
                        await ws.send_str("42")  # and once more, after it
            for body in POLLING_GARBAGE:
                r = await http.get(f"{web.url}/socket.io/?EIO=4&transport=polling")
                assert r.status == 200, await r.text()
                sid = orjson.loads((await r.text())[1:])["sid"]
                r = await http.post(
                    f"{web.url}/socket.io/?EIO=4&transport=polling&sid={sid}", data=body
                )
                assert r.status in (200, 400), (body, r.status, await r.text())

    # The server still serves: a real client connects, subscribes, pings.
    client = clients()
    await client.connect(web, await web.token("lim-viewer"))
    assert (await client.call("ping"))["pong"] is True
    web.no_tracebacks()
    log = web.text()
    warnings = [line for line in log.splitlines() if "malformed Socket.IO packet" in line]
    sent = rounds * (len(WEBSOCKET_GARBAGE) + len(POLLING_GARBAGE))
    assert len(warnings) < sent / 10, f"{len(warnings)} lines for {sent} bad frames"
    assert not re.search(r'"level": ?"(error|critical)"', log), web.tail(8000)
    web.stop()
    web.no_tracebacks()


async def test_sessions_without_connect_are_closed_and_big_messages_refused(
    start_web: Callable[..., Web], clients: Callable[[], Client]
) -> None:
    web = start_web(live_connect_timeout_s="1", live_max_payload_bytes="4096")
    await web.ready()
    async with aiohttp.ClientSession() as http:
        # An Engine.IO session that never says CONNECT is closed.
        async with http.ws_connect(web.ws, heartbeat=None) as ws:
            assert (await ws.receive_str(timeout=DEADLINE_S)).startswith("0{")
            assert await closed(ws), "a session without CONNECT stayed open"
        # A long-polling one too: its next poll says it is gone.
        r = await http.get(f"{web.url}/socket.io/?EIO=4&transport=polling")
        sid = orjson.loads((await r.text())[1:])["sid"]
        deadline = time.monotonic() + DEADLINE_S
        while True:
            poll = await http.get(f"{web.url}/socket.io/?EIO=4&transport=polling&sid={sid}")
            body = await poll.text()
            if poll.status == 400 or body.startswith("1"):  # gone, or CLOSE
                break
            assert time.monotonic() < deadline, "a polling session without CONNECT stayed"

    # Connected clients stay (well past the CONNECT timeout) ...
    token = await web.token("lim-viewer")
    client = clients()
    await client.connect(web, token)
    await asyncio.sleep(1.5)  # longer than the CONNECT timeout: it must not apply now
    assert client.sio.connected
    assert (await client.call("ping", {"x": "y" * 1000}))["pong"] is True
    # ... until one sends more than the limit: its connection is closed.
    big = clients()
    await big.connect(web, token)
    await big.sio.emit("ping", {"x": "y" * 10_000})
    await until(big.gone.is_set, "the big message's sender disconnected", web)
    assert (await client.call("ping"))["pong"] is True  # the other one is unaffected
    web.stop()
    web.no_tracebacks()


async def test_replays_are_limited_per_connection(
    start_web: Callable[..., Web], clients: Callable[[], Client]
) -> None:
    web = start_web(live_replays_per_minute="3")
    await web.ready()
    client = clients()
    await client.connect(web, await web.token("lim-viewer"))
    for _ in range(3):
        ack = await client.call("subscribe-alerts", {"lastEventId": "0"})
        assert ack["ok"] is True, ack
    ack = await client.call("subscribe-alerts", {"lastEventId": "0"})
    assert ack["ok"] is False, ack
    assert ack["error"]["code"] == "rate_limited", ack
    assert ack["error"]["details"]["retryAfterS"] > 0, ack
    await until(lambda: client.errors("rate_limited"), "a rate_limited error event", web)
    # Without a replay it still subscribes; another connection has its own allowance.
    assert (await client.call("subscribe-alerts", {}))["ok"] is True
    other = clients()
    await other.connect(web, await web.token("lim-viewer"))
    assert (await other.call("subscribe-system", {"lastEventId": 0}))["ok"] is True
    web.stop()
    web.no_tracebacks()


async def test_a_session_ends_with_its_token_unless_refreshed(
    settings: Settings, start_web: Callable[..., Web], clients: Callable[[], Client]
) -> None:
    web = start_web()
    await web.ready()
    assert settings.database_url is not None
    with psycopg.connect(settings.database_url.get_secret_value(), autocommit=True) as conn:
        key = auth.signing_key(conn, None)  # the one the web process signs with
        row = conn.execute(
            "SELECT token_version FROM users WHERE username = 'lim-viewer'"
        ).fetchone()
    assert row is not None
    viewer = auth.Principal("lim-viewer", "viewer", int(row[0]))
    other = auth.Principal("lim-other", "viewer", 0)
    tokens = auth.Tokens(key, 3600)

    def expiring_in(seconds: float, who: auth.Principal = viewer) -> str:
        return tokens.issue(who, now=time.time() - 3600 + seconds)[0]

    # Not refreshed: an `error` saying the token expired, then disconnected by the server.
    lapsing = clients()
    await lapsing.connect(web, expiring_in(2))
    [expired] = await until(lambda: lapsing.errors("token_expired"), "token_expired", web)
    assert "expired" in expired["message"]
    await until(lapsing.gone.is_set, "the expired session disconnected", web)
    assert not lapsing.sio.connected

    # Refreshed in time with a newer token of the same user: it stays.
    kept = clients()
    await kept.connect(web, expiring_in(3))
    for bad, why in (
        ({}, "invalid_token"),
        ({"token": 42}, "invalid_token"),
        ({"token": "not-a-jwt"}, "unauthorized"),
        ({"token": tokens.issue(other)[0]}, "unauthorized"),  # another user's
        ({"token": expiring_in(1)}, "unauthorized"),  # expires sooner
    ):
        ack = await kept.call("refresh-token", bad)
        assert ack["ok"] is False, (bad, ack)
        assert ack["error"]["code"] == why, (bad, ack)
    ack = await kept.call("refresh-token", {"token": tokens.issue(viewer)[0]})
    assert ack["ok"] is True, ack
    assert ack["expiresAt"], ack
    # Past the first token's expiry (a client whose session ended would be told so first).
    marker = clients()
    await marker.connect(web, expiring_in(4))
    await until(lambda: marker.errors("token_expired"), "the marker's token_expired", web)
    assert kept.sio.connected
    assert not kept.errors("token_expired")
    assert (await kept.call("ping"))["pong"] is True
    web.stop()
    web.no_tracebacks()


async def test_a_revocation_disconnects_every_socket_of_that_user(
    settings: Settings, start_web: Callable[..., Web], clients: Callable[[], Client]
) -> None:
    web = start_web()
    await web.ready()
    mine = [clients(), clients()]
    for c in mine:
        await c.connect(web, await web.token("lim-viewer"))
    bystander = clients()
    await bystander.connect(web, await web.token("lim-other"))

    assert settings.redis_url is not None
    r = redis.Redis.from_url(settings.redis_url.get_secret_value())
    try:
        r.publish(REVOKED, b"not json")  # ignored
        r.publish(REVOKED, orjson.dumps({"username": 42}))  # ignored
        r.publish(REVOKED, orjson.dumps({"username": "lim-viewer"}))
    finally:
        r.close()
    for c in mine:
        await until(c.gone.is_set, "the revoked user's socket disconnected", web)
        [ended] = c.errors("session_revoked")
        assert "log in again" in ended["message"]
    assert bystander.sio.connected
    assert (await bystander.call("ping"))["pong"] is True
    web.stop()
    web.no_tracebacks()


@pytest.fixture
def private_redis(tmp_path: Path) -> Iterator[Callable[[], subprocess.Popen[bytes]]]:
    """A redis-server of this test's own on a free port, which it may stop and start."""
    port = free_port()
    running: list[subprocess.Popen[bytes]] = []

    def start() -> subprocess.Popen[bytes]:
        proc = subprocess.Popen(
            ["redis-server", "--port", str(port), "--save", "", "--appendonly", "no"],
            cwd=tmp_path,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        running.append(proc)
        deadline = time.monotonic() + 10
        while True:
            with contextlib.suppress(redis.ConnectionError):
                if redis.Redis(port=port).ping():
                    return proc
            assert time.monotonic() < deadline, "private redis-server did not start"
            time.sleep(0.05)

    start.port = port  # type: ignore[attr-defined]
    yield start
    for proc in running:
        if proc.poll() is None:
            proc.terminate()
            proc.wait(10)


async def test_redis_down_means_retry_not_a_hang(
    subprocess_env: dict[str, str],
    start_web: Callable[..., Web],
    clients: Callable[[], Client],
    private_redis: Any,
) -> None:
    server = private_redis()
    env = {"redis_url": f"redis://127.0.0.1:{private_redis.port}/0"}
    web = start_web(**env)
    await web.ready()
    token = await web.token("lim-viewer")
    first = clients()
    await first.connect(web, token)
    server.terminate()
    server.wait(10)

    # Redis is gone: connects are refused with "retry", events answered with an error ack.
    refused = clients()
    with pytest.raises(socketio.exceptions.ConnectionError):
        await refused.connect(web, token)
    [refusal] = refused.refusals
    assert refusal["data"]["code"] == "unavailable", refusal
    assert refusal["data"]["details"]["retry"] is True, refusal
    ack = await first.call("subscribe-alerts", {"lastEventId": "0"})
    assert ack["ok"] is False, ack
    assert ack["error"]["details"]["retry"] is True, ack

    # Redis is back: the same client, retrying, gets in.
    private_redis()
    deadline = time.monotonic() + DEADLINE_S
    while True:
        again = clients()
        try:
            await again.connect(web, token)
            break
        except socketio.exceptions.ConnectionError:
            assert again.refusals, "neither accepted nor refused"
            assert time.monotonic() < deadline, again.refusals
            await asyncio.sleep(0.2)
    assert (await again.call("subscribe-alerts", {"lastEventId": "0"}))["ok"] is True
    web.no_tracebacks()
    web.stop()
