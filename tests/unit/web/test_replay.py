"""AnswerReplay (web/answers.py): which answers are served again, to whom, for how long."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import httpx

from iotmon.web.answers import SHAREABLE, AnswerReplay


class Origin:
    """An ASGI app that counts what reaches it; ``/api/shared`` answers are marked
    shareable (role viewer), ``/api/private`` ones are not, ``/api/missing`` is a 404."""

    def __init__(self) -> None:
        self.calls = 0
        self.delay = 0.0

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        self.calls += 1
        if self.delay:
            await asyncio.sleep(self.delay)
        status = 404 if scope["path"] == "/api/missing" else 200
        if scope["path"] != "/api/private":
            scope[SHAREABLE] = ("viewer", time.monotonic())
        scope["route"] = f"route:{scope['path']}"
        origin = dict(scope["headers"]).get(b"origin", b"-")
        headers = [(b"content-type", b"text/plain"), (b"x-origin", origin)]
        await send({"type": "http.response.start", "status": status, "headers": headers})
        await send({"type": "http.response.body", "body": f"answer {self.calls}".encode()})


def replay(
    origin: Origin,
    *,
    lifetime_s: float = 60,
    authorized: bool = True,
    admitted: bool = True,
) -> tuple[httpx.AsyncClient, list[tuple[Any, int]], AnswerReplay]:
    seen: list[tuple[Any, int]] = []
    layer = AnswerReplay(
        origin,
        lifetime_s=lifetime_s,
        stale_s=lifetime_s,
        authorize=lambda header, role: authorized and header == "Bearer ok" and role == "viewer",
        gate=lambda scope: _const(admitted),
        observers=[lambda scope, status, s: seen.append((scope.get("route"), status))],
    )
    client = httpx.AsyncClient(
        transport=httpx.ASGITransport(app=layer),
        base_url="http://t",
        headers={"Authorization": "Bearer ok"},
    )
    return client, seen, layer


async def _const(value: bool) -> bool:
    return value


async def test_a_shareable_answer_is_served_again_whole_and_observed() -> None:
    origin = Origin()
    client, seen, _ = replay(origin)
    first = await client.get("/api/shared?x=1")
    again = await client.get("/api/shared?x=1")
    assert origin.calls == 1
    assert again.status_code == 200
    assert again.text == first.text == "answer 1"
    assert again.headers["x-cache"] == "hit"
    assert again.headers["content-type"] == "text/plain"
    assert seen == [("route:/api/shared", 200)]  # the replay; the first is the stack's to count
    await client.get("/api/shared?x=2")  # another query: another answer
    assert origin.calls == 2


async def test_only_shareable_200_answers_to_get_under_the_prefix_are_kept() -> None:
    origin = Origin()
    client, _, _ = replay(origin)
    for path in ("/api/private", "/api/missing", "/other"):
        await client.get(path)
        await client.get(path)
    await client.post("/api/shared")
    await client.post("/api/shared")
    assert origin.calls == 8


async def test_who_may_not_read_it_or_is_over_the_limit_goes_through_the_stack() -> None:
    origin = Origin()
    client, _, layer = replay(origin)
    await client.get("/api/shared")
    await client.get("/api/shared", headers={"Authorization": "Bearer forged"})
    assert origin.calls == 2
    layer.authorize = lambda header, role: True
    layer.gate = lambda scope: _const(False)
    await client.get("/api/shared")
    assert origin.calls == 3


async def test_origin_and_gzip_get_their_own_answers() -> None:
    origin = Origin()
    client, _, _ = replay(origin)
    a = await client.get("/api/shared", headers={"Origin": "http://a.example"})
    b = await client.get("/api/shared", headers={"Origin": "http://b.example"})
    assert a.headers["x-origin"] == "http://a.example"
    assert b.headers["x-origin"] == "http://b.example"
    await client.get("/api/shared", headers={"Accept-Encoding": "identity"})
    await client.get("/api/shared", headers={"Accept-Encoding": "gzip"})
    assert origin.calls == 4
    again = await client.get("/api/shared", headers={"Origin": "http://b.example"})
    assert again.headers["x-origin"] == "http://b.example"
    assert origin.calls == 4


async def test_an_expired_answer_is_computed_once_while_the_others_get_the_old_one() -> None:
    origin = Origin()
    client, _, layer = replay(origin, lifetime_s=0.2)
    await client.get("/api/shared")
    await asyncio.sleep(0.25)
    origin.delay = 0.1
    answers = await asyncio.gather(*(client.get("/api/shared") for _ in range(5)))
    assert origin.calls == 2  # one refresh, not five
    assert sorted(a.text for a in answers) == ["answer 1"] * 4 + ["answer 2"]
    origin.delay = 0
    assert (await client.get("/api/shared")).text == "answer 2"
    await asyncio.sleep(0.25 + layer.stale_s)  # expired and nobody refreshing: recomputed
    assert (await client.get("/api/shared")).text == "answer 3"


async def test_what_is_kept_is_bounded_in_count_and_bytes() -> None:
    origin = Origin()
    client, _, layer = replay(origin, lifetime_s=0.1)
    layer.max_kept = 3
    for i in range(9):  # full twice (everything dropped), then full again
        await client.get(f"/api/shared?i={i}")
        assert len(layer.kept) <= 3
        assert layer.size == sum(len(m["body"]) for k in layer.kept.values() for m in k.body)
    assert len(layer.kept) == 3
    await asyncio.sleep(0.25)  # all expired: they make room first
    await client.get("/api/shared?i=new")
    assert list(layer.kept) == [("/api/shared", b"i=new", True, None)]
    layer.max_bytes = 5  # an answer larger than the budget still replaces the others
    await client.get("/api/shared?i=big")
    assert list(layer.kept) == [("/api/shared", b"i=big", True, None)]
    assert layer.size == len(b"answer 11")
