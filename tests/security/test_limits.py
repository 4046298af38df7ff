"""Finding 6: request bodies and headers are bounded on every role's HTTP server."""

from __future__ import annotations

import socket
from urllib.parse import urlsplit

import httpx
import pytest

from tests.security.conftest import System


def _raw(url: str, request: bytes, chunks: int = 0, chunk: bytes = b"") -> bytes:
    """Send ``request`` (then ``chunks`` times ``chunk``) on a raw socket; what came back."""
    u = urlsplit(url)
    with socket.create_connection((u.hostname, u.port), timeout=10) as s:
        try:
            s.sendall(request)
            for _ in range(chunks):
                s.sendall(chunk)
        except (BrokenPipeError, ConnectionResetError):
            pass  # the server hung up: what did it say?
        data = b""
        try:
            while part := s.recv(65536):
                data += part
        except (ConnectionResetError, TimeoutError):
            pass
    return data


@pytest.mark.parametrize("role", ["web", "alerts"])
def test_a_huge_header_is_refused(system: System, role: str) -> None:
    proc = system.start(role)
    head = b"GET /health HTTP/1.1\r\nHost: x\r\nX-Big: "
    answer = _raw(proc.url, head, chunks=64, chunk=b"a" * 65536)  # 4 MB of one header
    assert answer.startswith(b"HTTP/1.1 431"), answer[:200]
    assert proc.alive()
    # an ordinary request with ordinary headers is fine
    assert httpx.get(
        f"{proc.url}/health", headers={"X-Ok": "a" * 4000}, timeout=10
    ).status_code in (200, 503)


def test_a_huge_body_is_refused_before_it_is_read(system: System) -> None:
    web = system.start("web")
    # declared: refused at once
    head = (
        b"POST /api/auth/token HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
        b"Content-Length: 300000000\r\n\r\n"
    )
    answer = _raw(web.url, head, chunks=4, chunk=b"[" * 65536)
    assert answer.startswith(b"HTTP/1.1 413"), answer[:200]
    # chunked, growing past the limit while read
    head = (
        b"POST /api/auth/token HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
        b"Transfer-Encoding: chunked\r\n\r\n"
    )
    piece = b"10000\r\n" + b" " * 65536 + b"\r\n"
    answer = _raw(web.url, head, chunks=40, chunk=piece)  # 2.5 MB
    assert answer.startswith(b"HTTP/1.1 413"), answer[:200]
    # under the limit, a normal answer
    r = httpx.post(
        f"{web.url}/api/auth/token", json={"username": "x", "password": "y" * 200}, timeout=10
    )
    assert r.status_code == 401
    assert web.alive()


def test_the_body_limit_is_configurable(system: System) -> None:
    web = system.start("web", IOTMON_MAX_BODY_BYTES="2048")
    r = httpx.post(
        f"{web.url}/api/auth/token",
        content=b"{" + b" " * 4096 + b"}",
        headers={"content-type": "application/json"},
        timeout=10,
    )
    assert r.status_code == 413
    assert r.json()["error"]["code"] == "payload_too_large"
