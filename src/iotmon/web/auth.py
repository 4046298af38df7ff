"""Tokens and sessions: HS256 JWT bearer tokens with expiry for the users of ``iotmon.users``
(roles ``viewer`` < ``operator`` < ``admin``).

The signing key is ``IOTMON_JWT_SECRET`` or, when unset, one generated on first use and kept
in PostgreSQL (``app_secrets``), so every web process of a deployment accepts the same tokens.

Sessions are revocable: a token carries its user's ``token_version`` (``ver``), which demotion,
deletion, a password change and logout bump; ``Sessions`` checks it against the users table
(kept ``SESSION_CACHE_S``), and every revocation is published on ``REVOKED_CHANNEL`` so the
Socket.IO servers disconnect that user's sockets.
"""

from __future__ import annotations

import asyncio
import secrets
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import jwt
import orjson
import psycopg

from iotmon.users import service as users
from iotmon.users.models import ROLES, AuthError, Principal, UserError

ALGORITHM = "HS256"
# Redis channel: {"username": ...} published on every revocation (the Socket.IO servers
# disconnect that user's sockets).
REVOKED_CHANNEL = "iotmon:sessions:revoked"
SESSION_CACHE_S = 2.0


def revoked_message(username: str) -> bytes:
    return orjson.dumps({"username": username})


def signing_key(conn: psycopg.Connection[Any], configured: str | None) -> str:
    if configured:
        if len(configured) < 32:
            raise UserError("IOTMON_JWT_SECRET needs at least 32 characters (HS256 key)")
        return configured
    conn.execute(
        "INSERT INTO app_secrets (name, value) VALUES ('jwt', %s) ON CONFLICT DO NOTHING",
        (secrets.token_urlsafe(48),),
    )
    row = conn.execute("SELECT value FROM app_secrets WHERE name = 'jwt'").fetchone()
    assert row is not None
    return str(row[0])


def bearer(header: str | None) -> str | None:
    """The token of an ``Authorization: Bearer <token>`` header, or None."""
    if isinstance(header, str) and header.lower().startswith("bearer "):
        return header[7:].strip()
    return None


# --- tokens ---
@dataclass(frozen=True, slots=True)
class Tokens:
    key: str
    ttl_s: int = 3600

    # token -> (who, exp): a valid token's signature is checked once, its expiry every time
    # (a dashboard sends the same token with every request; decoding it was ~8 % of one)
    _verified: dict[str, tuple[Principal, int]] = field(
        default_factory=dict, compare=False, repr=False
    )

    def issue(self, principal: Principal, now: float | None = None) -> tuple[str, int]:
        now = time.time() if now is None else now
        exp = int(now) + self.ttl_s
        token = jwt.encode(
            {
                "sub": principal.username,
                "role": principal.role,
                "ver": principal.version,
                "iat": int(now),
                "exp": exp,
            },
            self.key,
            algorithm=ALGORITHM,
        )
        return token, exp

    def verify(self, token: str | None) -> Principal:
        if not token:
            raise AuthError("a bearer token is required: POST /api/auth/token to get one")
        known = self._verified.get(token)
        if known is not None:
            if time.time() < known[1]:
                return known[0]
            del self._verified[token]
        who, exp = self._decode(token)
        if len(self._verified) >= 10_000:
            self._verified.clear()
        self._verified[token] = (who, exp)
        return who

    def _decode(self, token: str) -> tuple[Principal, int]:
        try:
            claims = jwt.decode(
                token, self.key, algorithms=[ALGORITHM], options={"require": ["exp", "sub"]}
            )
        except jwt.ExpiredSignatureError:
            raise AuthError("the token has expired: log in again") from None
        except jwt.InvalidTokenError:
            raise AuthError("the token is not valid") from None
        role = claims.get("role")
        if role not in ROLES:
            raise AuthError("the token carries no valid role")
        version = claims.get("ver", 0)
        if not isinstance(version, int) or isinstance(version, bool):
            raise AuthError("the token is not valid")
        return Principal(str(claims["sub"]), str(role), version), int(claims["exp"])


# --- sessions (revocation) ---
class Sessions:
    """Whether a token's session is still current: its user exists, with the role and the
    ``token_version`` the token carries. Read from the users table through ``pool`` and kept
    ``ttl_s`` per user (one query per user and process every ``ttl_s`` at most; a revocation
    made elsewhere takes effect within it, one made here at once)."""

    def __init__(self, pool: Any, ttl_s: float = SESSION_CACHE_S) -> None:
        self.pool = pool
        self.ttl_s = ttl_s
        self._known: dict[str, tuple[float, tuple[str, int] | None]] = {}
        self._reading: dict[str, asyncio.Future[tuple[str, int] | None]] = {}

    async def _read(self, username: str) -> tuple[str, int] | None:
        async with self.pool.connection() as conn:
            return await users.session_state(conn, username)

    async def state(self, username: str) -> tuple[str, int] | None:
        """(role, token_version) of ``username``, or None when there is no such user."""
        now = time.monotonic()
        known = self._known.get(username)
        if known is not None and now - known[0] < self.ttl_s:
            return known[1]
        pending = self._reading.get(username)
        if pending is None:  # one query for every request of this user that waits on it
            pending = asyncio.ensure_future(self._read(username))
            self._reading[username] = pending
            try:
                found = await pending
            finally:
                self._reading.pop(username, None)
            if len(self._known) >= 10_000:
                self._known.clear()
            self._known[username] = (time.monotonic(), found)
            return found
        return await asyncio.shield(pending)

    async def current(self, who: Principal) -> bool:
        state = await self.state(who.username)
        return state is not None and state == (who.role, who.version)

    def forget(self, username: str) -> None:
        """Drop what is known of ``username`` (after a change made by this process)."""
        self._known.pop(username, None)


_sessions: Sessions | None = None


def use_sessions(sessions: Sessions) -> None:
    """The process's ``Sessions`` (the web role sets it), for ``session_current``."""
    global _sessions
    _sessions = sessions


async def session_current(claims: Principal | Mapping[str, Any]) -> bool:
    """Whether the session of a verified token is still current (user not deleted, role and
    token version unchanged): a ``Principal`` from ``Tokens.verify`` or the token's claims.
    For the Socket.IO server's connect handler; True when this process has no ``Sessions``."""
    if _sessions is None:
        return True
    if isinstance(claims, Principal):
        who = claims
    else:
        who = Principal(str(claims.get("sub")), str(claims.get("role")), int(claims.get("ver", 0)))
    return await _sessions.current(who)
