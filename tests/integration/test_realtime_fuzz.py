"""Property tests of the Socket.IO service: whatever a client sends (a connect ``auth`` of any
JSON shape, any client event with any arguments: huge strings, lone surrogates, deep nesting,
numbers like 1e308, ``lastEventId`` of any type), it gets an answer (a connection or a
``connect_error``; an ack) and the server raises nothing.

The service (``LiveService``, the web role's) runs under uvicorn in a thread of this process,
on the real Redis (a database of its own); the clients are python-socketio clients on a
websocket, driven from another thread.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Coroutine, Iterator
from typing import Any, TypeVar

import pytest
import socketio
import uvicorn
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from iotmon.realtime.server import LiveService
from iotmon.web.auth import Principal, Tokens
from tests.integration.helpers import free_port

T = TypeVar("T")
REDIS_DB = 9  # of its own: its rooms and watch entries reach no other test
KEY = "fuzz-signing-key-of-at-least-thirty-two-characters"
EVENTS = [
    "subscribe-device",
    "unsubscribe-device",
    "subscribe-alerts",
    "unsubscribe-alerts",
    "subscribe-system",
    "unsubscribe-system",
    "refresh-token",
    "ping",
]


class Loop:
    """An event loop in a thread of its own."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.thread.start()

    def run(self, coro: Coroutine[Any, Any, T], timeout: float = 30) -> T:
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout)

    def stop(self) -> None:
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(10)


class Served:
    def __init__(self, url: str, service: LiveService, tokens: Tokens) -> None:
        self.url, self.service, self.tokens = url, service, tokens
        self.client_loop = Loop()
        self.client = socketio.AsyncClient(reconnection=False)
        self.token = tokens.issue(Principal("fuzz-user", "viewer"))[0]
        self.client_loop.run(
            self.client.connect(url, auth={"token": self.token}, transports=["websocket"])
        )

    def call(self, event: str, data: Any) -> Any:
        async def go() -> Any:
            if not self.client.connected:  # e.g. a refresh-token that ended nothing
                await self.client.connect(
                    self.url, auth={"token": self.token}, transports=["websocket"]
                )
            return await self.client.call(event, data, timeout=10)

        return self.client_loop.run(go())

    def connect(self, auth: Any) -> tuple[bool, Any]:
        async def go() -> tuple[bool, Any]:
            client = socketio.AsyncClient(reconnection=False)
            refusals: list[Any] = []

            async def refused(data: Any = None) -> None:
                refusals.append(data)

            client.on("connect_error", refused)
            try:
                await client.connect(self.url, auth=auth, transports=["websocket"], wait_timeout=10)
            except socketio.exceptions.ConnectionError:
                return False, refusals
            await client.disconnect()
            return True, None

        return self.client_loop.run(go())


@pytest.fixture(scope="module")
def served(infra: dict[str, str]) -> Iterator[Served]:
    base = infra["IOTMON_REDIS_URL"].rsplit("/", 1)[0]
    port = free_port()
    tokens = Tokens(KEY, 3600)
    server_loop = Loop()
    holder: dict[str, Any] = {}

    async def device_exists(device: str) -> bool:
        return device == "device-001"

    async def start() -> None:
        service = LiveService(
            f"{base}/{REDIS_DB}",
            authenticate=tokens.verify,
            device_exists=device_exists,
            max_payload_bytes=8 << 20,  # the limit has its own test (test_realtime_limits.py)
        )
        await service.start()
        server = uvicorn.Server(
            uvicorn.Config(
                service.app, host="127.0.0.1", port=port, log_level="warning", lifespan="off"
            )
        )
        holder.update(service=service, server=server)
        holder["task"] = asyncio.ensure_future(server.serve())
        while not server.started:  # noqa: ASYNC110 (uvicorn has a flag, no event)
            await asyncio.sleep(0.01)

    server_loop.run(start())
    s = Served(f"http://127.0.0.1:{port}", holder["service"], tokens)
    yield s
    s.client_loop.run(s.client.disconnect())
    s.client_loop.stop()

    async def stop() -> None:
        holder["server"].should_exit = True
        await holder["task"]
        await holder["service"].close()

    server_loop.run(stop())
    server_loop.stop()


def failures(served: Served) -> list[str]:
    """The kinds of handler failure the service logged (it must log none: a handler that
    raised was answered with "retry", but raising is what must not happen)."""
    return [k for k in served.service.log.seen if k.startswith(("event:", "connect:"))]


# --- strategies ------------------------------------------------------------------------------
any_text = st.text(alphabet=st.characters(exclude_categories=[]), max_size=50)  # surrogates too
huge_text = st.builds(
    lambda n, c: c * n, st.integers(1000, 8000), st.sampled_from(["a", "\u00e9", "\ud800", "x"])
)
numbers = (
    st.integers(min_value=-(2**70), max_value=2**70)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.sampled_from([1e308, -1e308, 5e-324, 0.0, -0.0, 2**63, -(2**63), 2**64])
)
scalars = st.none() | st.booleans() | numbers | any_text | huge_text


def _nested(depth: int) -> list[Any]:
    value: list[Any] = []
    for _ in range(depth - 1):
        value = [value]
    return value


nested = st.integers(1, 900).map(_nested)
json_values = st.recursive(
    scalars,
    lambda inner: st.lists(inner, max_size=5) | st.dictionaries(any_text, inner, max_size=5),
    max_leaves=20,
)
event_ids = scalars | st.sampled_from(["0", "1", "99999999999999999999", "-1", " 1", "1e3"])
payloads = (
    json_values
    | nested
    | st.fixed_dictionaries(
        {},
        optional={
            "deviceId": st.sampled_from(["device-001", "device-999", ""]) | json_values,
            "lastEventId": event_ids,
            "token": json_values,
        },
    )
)
arguments = (
    st.none() | payloads | st.tuples(payloads, payloads) | st.tuples(payloads, payloads, payloads)
)

FUZZ = settings(
    max_examples=300,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)


def check_answer(event: str, ack: Any) -> None:
    assert isinstance(ack, dict), (event, ack)
    if event == "ping" and "pong" in ack:
        assert ack["pong"] is True
        return
    assert isinstance(ack.get("ok"), bool), (event, ack)
    if not ack["ok"]:
        err = ack["error"]
        assert isinstance(err["code"], str), ack
        assert isinstance(err["message"], str), ack


# --- properties ------------------------------------------------------------------------------
@FUZZ
@given(event=st.sampled_from(EVENTS), data=arguments)
def test_every_client_event_is_answered(served: Served, event: str, data: Any) -> None:
    check_answer(event, served.call(event, data))
    assert not failures(served), failures(served)


@FUZZ
@given(event=any_text.filter(lambda e: e not in EVENTS and e), data=arguments)
def test_unknown_events_are_answered_too(served: Served, event: str, data: Any) -> None:
    ack = served.call(event, data)
    assert ack["ok"] is False, ack
    assert ack["error"]["code"] == "unknown_event", ack
    assert not failures(served), failures(served)


@settings(FUZZ, max_examples=100)
@given(auth=payloads | st.fixed_dictionaries({"token": json_values, "lastEventId": event_ids}))
def test_any_connect_auth_is_accepted_or_refused(served: Served, auth: Any) -> None:
    connected, refusals = served.connect(auth)
    if not connected:  # refused with a reason, not left waiting
        [refusal] = refusals
        # unauthorized; bad_packet for an auth that is no object (python-socketio's client
        # writes auth=1.0 as "01.0": the 1 reads as an ack id, ".0" as no JSON at all)
        assert refusal["data"]["code"] in ("unauthorized", "bad_packet"), refusal
    assert not failures(served), failures(served)


@settings(FUZZ, max_examples=50)
@given(last=event_ids)
def test_a_valid_token_connects_with_any_last_event_id(served: Served, last: Any) -> None:
    connected, refusals = served.connect({"token": served.token, "lastEventId": last})
    assert connected, refusals
    assert not failures(served), failures(served)


def test_the_service_still_serves_after_the_fuzzing(served: Served) -> None:
    assert served.call("ping", None)["pong"] is True
    ack = served.call("subscribe-device", {"deviceId": "device-001"})
    assert ack == {"ok": True, "room": "device:device-001", "replayed": 0}, ack
    assert not failures(served), failures(served)
