"""One Redis round trip for many callers at once (what a reconnect storm asks for).

A storm of 1,000 Socket.IO connects used to read ``live:seq`` 1,000 times at once, one pooled
connection each, and ran redis-py's pool dry (``MaxConnectionsError``). ``Coalesced`` runs a
call for everyone who asked while the previous one was in flight: each caller's answer comes
from a round trip that started after it asked (never older than the question), and at most one
round trip is in flight. 1,000 connects cost a handful of reads.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Generic, TypeVar

K = TypeVar("K")
V = TypeVar("V")


def _retrieved(future: asyncio.Future[V]) -> None:
    # Everyone waiting may have gone (disconnected): the error is theirs, not the loop's.
    if not future.cancelled():
        future.exception()


class Coalesced(Generic[K, V]):
    """``await coalesced(key)``: ``run(keys)`` of every key asked for meanwhile, shared."""

    def __init__(self, run: Callable[[set[K]], Awaitable[V]]) -> None:
        self._run = run
        self._keys: set[K] = set()
        self._next: asyncio.Future[V] | None = None
        self._task: asyncio.Task[None] | None = None
        self.round_trips = 0

    async def __call__(self, key: K) -> V:
        if self._next is None:
            self._next = asyncio.get_running_loop().create_future()
            self._next.add_done_callback(_retrieved)
        self._keys.add(key)
        future = self._next
        if self._task is None:
            self._task = asyncio.create_task(self._drain())
        return await asyncio.shield(future)

    async def _drain(self) -> None:
        future: asyncio.Future[V] | None = None
        try:
            while self._next is not None:
                future, keys = self._next, self._keys
                self._next, self._keys = None, set()
                self.round_trips += 1
                try:
                    result = await self._run(keys)
                except Exception as exc:
                    future.set_exception(exc)
                else:
                    future.set_result(result)
        finally:
            self._task = None
            for pending in (future, self._next):  # cancelled (shutdown): nobody waits forever
                if pending is not None and not pending.done():
                    pending.set_exception(ConnectionError("shutting down"))
            if self._next is not None and self._next.done():
                self._next, self._keys = None, set()
