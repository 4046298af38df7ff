"""A crowd of Socket.IO clients that all connect at once (for test_reconnect_storm.py).

Run as a script, one crowd per process (so no one event loop is the bottleneck):

    python -m tests.integration.storm URL TOKEN CLIENTS AT SPREAD_S WITHIN_S

At wall-clock time ``AT`` its clients start connecting, spread evenly over ``SPREAD_S``
seconds, each a python-socketio ``AsyncClient`` (every other one on a websocket, the rest as
socket.io-client's default: long-polling, then upgraded). A client the server refuses with a
retryable error (a ``connect_error`` whose details say ``retry: true``), or whose transport
fails, tries again after a short random back-off, as the dashboard does; one the server
neither accepts nor refuses within ``WITHIN_S`` of ``AT`` is counted as hung, one refused
for any other reason as failed. It prints one JSON line (the figures), then waits for a line
on stdin, disconnects every client and prints ``{"closed": n}``.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import sys
import time
from collections import Counter
from typing import Any

import orjson
import socketio


class _Attempt:
    """One connection attempt's client and what it heard."""

    def __init__(self) -> None:
        self.client = socketio.AsyncClient(reconnection=False)
        self.refusals: list[Any] = []
        self.status = asyncio.Event()
        self.connected_status = False
        self.client.on("connect_error", self._refused)
        self.client.on("connection-status", self._status)

    async def _refused(self, data: Any = None) -> None:
        self.refusals.append(data)

    async def _status(self, data: Any = None) -> None:
        self.connected_status = isinstance(data, dict) and data.get("status") == "connected"
        self.status.set()


async def _one(
    url: str,
    token: str,
    transports: list[str] | None,
    start: float,
    end: float,
    out: dict[str, Any],
) -> None:
    await asyncio.sleep(max(0.0, start - time.time()))
    attempt = 0
    while True:
        attempt += 1
        a = _Attempt()
        left = end - time.time()
        if left <= 0:
            out["hung"] += 1
            return
        try:
            await a.client.connect(
                url, auth={"token": token}, transports=transports, wait_timeout=left
            )
        except socketio.exceptions.ConnectionError as exc:
            refusal = a.refusals[-1] if a.refusals else None
            data = refusal.get("data") if isinstance(refusal, dict) else None
            details = data.get("details") if isinstance(data, dict) else None
            if isinstance(details, dict) and details.get("retry") is True:
                out["refusals"][str(data.get("code"))] += 1  # type: ignore[union-attr]
            elif "namespaces failed" not in str(exc) and "Unexpected" in str(exc):
                out["hung"] += 1  # neither accepted nor refused within the deadline
                return
            elif refusal is None or isinstance(refusal, str):
                out["refusals"]["transport"] += 1  # a real client's reconnection retries
            else:
                out["failed"].append(repr(refusal)[:300])
                return
            with_jitter = min(2.0, 0.05 * 2 ** min(attempt, 5)) * (0.5 + random.random())
            await asyncio.sleep(with_jitter)
            continue
        out["clients"].append(a.client)
        out["attempts"][attempt] += 1
        out["connected_at"].append(time.time() - start)
        # connection-status follows the connect: part of being connected for a dashboard.
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(a.status.wait(), max(0.1, end - time.time()))
        out["status"] += a.connected_status
        return


async def crowd(url: str, token: str, n: int, at: float, spread_s: float, within_s: float) -> None:
    out: dict[str, Any] = {
        "clients": [],
        "hung": 0,
        "failed": [],
        "status": 0,
        "refusals": Counter(),
        "attempts": Counter(),
        "connected_at": [],
    }
    end = at + within_s
    await asyncio.gather(
        *(
            # Every other client as socket.io-client's default: long-polling, then upgraded.
            _one(
                url,
                token,
                ["websocket"] if i % 2 else None,
                at + spread_s * i / max(1, n),
                end,
                out,
            )
            for i in range(n)
        )
    )
    connected_at = out["connected_at"]
    print(
        orjson.dumps(
            {
                "connected": len(out["clients"]),
                "status": out["status"],
                "hung": out["hung"],
                "failed": out["failed"][:5],
                "failedCount": len(out["failed"]),
                "refusals": dict(out["refusals"]),
                "attempts": {str(k): v for k, v in out["attempts"].items()},
                "lastConnectedS": max(connected_at) if connected_at else None,
                "allDoneS": time.time() - at,
            }
        ).decode(),
        flush=True,
    )
    await asyncio.get_running_loop().run_in_executor(None, sys.stdin.readline)
    await asyncio.gather(*(c.disconnect() for c in out["clients"]), return_exceptions=True)
    print(orjson.dumps({"closed": len(out["clients"])}).decode(), flush=True)


if __name__ == "__main__":
    url_, token_, n_, at_, spread_, within_ = sys.argv[1:7]
    asyncio.run(crowd(url_, token_, int(n_), float(at_), float(spread_), float(within_)))
