"""What keeps logins from starving the API or guessing passwords:

* ``Hashing``: argon2 (~50 ms of CPU on purpose) runs in its own small thread pool, never on
  the shared default one, never while a database connection is held, with a bounded queue:
  past it, a login is answered 503 at once instead of waiting behind hundreds of others.
* ``Backoff``: failed logins per account and per client address, counted in Redis (every web
  process shares them); past a few, each further failure locks that account or address out for
  twice as long as the one before, up to ``MAX_LOCK_S``. A success clears the account's count.
* ``client_address``: the address a request comes from. ``X-Forwarded-For`` counts only when
  the peer is one of ``IOTMON_TRUSTED_PROXIES`` (empty by default: never).
"""

from __future__ import annotations

import asyncio
import hashlib
import ipaddress
import os
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any, TypeVar

import redis.asyncio as aioredis

from iotmon import logging as log

logger = log.get(__name__)
T = TypeVar("T")

Network = ipaddress.IPv4Network | ipaddress.IPv6Network


class Busy(Exception):
    """Too many logins at once: answer 503 with Retry-After."""


class Hashing:
    """At most ``workers`` password hashes at a time, in threads of their own; at most
    ``queue`` waiting for one (each for at most ``wait_s``); beyond that, ``Busy``."""

    def __init__(self, workers: int | None = None, queue: int = 32, wait_s: float = 3.0) -> None:
        self.workers = workers or max(1, min(4, (os.cpu_count() or 2) // 2))
        self.queue = queue
        self.wait_s = wait_s
        self._executor = ThreadPoolExecutor(self.workers, thread_name_prefix="iotmon-argon2")
        self._slots: asyncio.Semaphore | None = None
        self.waiting = 0
        self.refused = 0

    async def run(self, fn: Callable[..., T], *args: Any) -> T:
        if self._slots is None:
            self._slots = asyncio.Semaphore(self.workers)
        slots = self._slots
        if self.waiting >= self.queue:
            self.refused += 1
            raise Busy("too many logins at once")
        self.waiting += 1
        try:
            await asyncio.wait_for(slots.acquire(), self.wait_s)
        except TimeoutError:
            self.refused += 1
            raise Busy("too many logins at once") from None
        finally:
            self.waiting -= 1
        loop = asyncio.get_running_loop()
        try:
            done = self._executor.submit(fn, *args)
        except BaseException:
            slots.release()
            raise
        # The slot is freed when the hash is done, even if the request went away meanwhile.
        done.add_done_callback(lambda _: loop.call_soon_threadsafe(slots.release))
        return await asyncio.wrap_future(done)

    def close(self) -> None:
        self._executor.shutdown(wait=False, cancel_futures=True)


class Backoff:
    ACCOUNT_FREE = 5  # failures of one account before it is locked out
    ADDRESS_FREE = 20  # failures from one address before it is locked out
    WINDOW_S = 900  # failures are counted over this long after the last one
    MAX_LOCK_S = 900

    def __init__(self, redis: aioredis.Redis, namespace: str) -> None:
        self.redis = redis
        self.prefix = f"iotmon:{namespace}:login"

    def _keys(self, username: str, address: str) -> list[tuple[str, int]]:
        # the name is hashed: a key of bounded length whatever was sent
        user = hashlib.sha256(username.encode("utf-8", "surrogatepass")).hexdigest()[:24]
        return [(f"user:{user}", self.ACCOUNT_FREE), (f"addr:{address}", self.ADDRESS_FREE)]

    async def wait_s(self, username: str, address: str) -> int:
        """Seconds until this account and address may try again (0: now)."""
        try:
            pipe = self.redis.pipeline(transaction=False)
            for key, _ in self._keys(username, address):
                pipe.pttl(f"{self.prefix}:lock:{key}")
            ttls = await pipe.execute()
        except aioredis.RedisError as exc:
            logger.warning("login back-off unavailable (redis)", error=str(exc))
            return 0
        return max((-(-int(t) // 1000) for t in ttls if int(t) > 0), default=0)

    async def failed(self, username: str, address: str) -> int:
        """Count a failure; the lock-out it starts, in seconds (0: none)."""
        longest = 0
        try:
            for key, free in self._keys(username, address):
                pipe = self.redis.pipeline(transaction=False)
                pipe.incr(f"{self.prefix}:fail:{key}")
                pipe.expire(f"{self.prefix}:fail:{key}", self.WINDOW_S)
                count, _ = await pipe.execute()
                if int(count) > free:
                    lock = min(self.MAX_LOCK_S, 2 ** min(int(count) - free - 1, 20))
                    await self.redis.set(f"{self.prefix}:lock:{key}", 1, ex=lock)
                    longest = max(longest, lock)
        except aioredis.RedisError as exc:
            logger.warning("login back-off unavailable (redis)", error=str(exc))
        return longest

    async def succeeded(self, username: str, address: str) -> None:
        key = self._keys(username, address)[0][0]
        try:
            await self.redis.delete(f"{self.prefix}:fail:{key}", f"{self.prefix}:lock:{key}")
        except aioredis.RedisError as exc:
            logger.warning("login back-off unavailable (redis)", error=str(exc))


def parse_networks(text: str) -> tuple[Network, ...]:
    """``IOTMON_TRUSTED_PROXIES``: addresses or networks, separated by commas or spaces."""
    out: list[Network] = []
    for part in text.replace(",", " ").split():
        try:
            out.append(ipaddress.ip_network(part.strip(), strict=False))
        except ValueError:
            raise ValueError(
                f"IOTMON_TRUSTED_PROXIES: {part!r} is not an address or network"
            ) from None
    return tuple(out)


def _ip(text: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    try:
        return ipaddress.ip_address(text.strip().strip("[]"))
    except ValueError:
        return None


def _trusted(address: str, trusted: tuple[Network, ...]) -> bool:
    ip = _ip(address)
    return ip is not None and any(ip in net for net in trusted)


def client_address(scope: Any, trusted: tuple[Network, ...]) -> str:
    """The peer's address; when the peer is a trusted proxy, the right-most address of
    ``X-Forwarded-For`` that is not itself a trusted proxy (what the left of it says is the
    client's word, not the proxy's)."""
    client = scope.get("client")
    peer = str(client[0]) if client else "unknown"
    if not trusted or not _trusted(peer, trusted):
        return peer
    chain: list[str] = []
    for name, value in scope.get("headers", ()):
        if name == b"x-forwarded-for":
            chain.extend(p.strip() for p in value.decode("latin-1").split(","))
    for hop in reversed(chain):
        ip = _ip(hop)
        if ip is None:
            return peer  # a proxy we trust would not write this
        if not any(ip in net for net in trusted):
            return str(ip)
    return str(_ip(chain[0])) if chain else peer
