"""Users, passwords and tokens: argon2 password hashes, HS256 JWT bearer tokens with expiry,
roles ``viewer`` < ``operator`` < ``admin``.

The signing key is ``IOTMON_JWT_SECRET`` or, when unset, one generated on first use and kept
in PostgreSQL (``app_secrets``), so every web process of a deployment accepts the same tokens.

Sessions are revocable: a token carries its user's ``token_version`` (``ver``), which demotion,
deletion, a password change and logout bump; ``Sessions`` checks it against the users table
(kept ``SESSION_CACHE_S``), and every revocation is published on ``REVOKED_CHANNEL`` so the
Socket.IO servers disconnect that user's sockets.
"""

from __future__ import annotations

import asyncio
import re
import secrets
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import jwt
import psycopg
from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError

ROLES: tuple[str, ...] = ("viewer", "operator", "admin")  # in rank order
ALGORITHM = "HS256"
USERNAME = re.compile(r"^[A-Za-z0-9_.@-]{1,64}$")
_hasher = PasswordHasher()
# Verifying an unknown user costs the same as a known one: no user enumeration by timing.
_DUMMY_HASH = _hasher.hash(secrets.token_urlsafe(16))
# Redis channel: {"username": ...} published on every revocation (the Socket.IO servers
# disconnect that user's sockets).
REVOKED_CHANNEL = "iotmon:sessions:revoked"
SESSION_CACHE_S = 2.0


class AuthError(Exception):
    """Credentials or a token that do not let someone in (the message says why)."""


class UserError(Exception):
    """A user request that cannot be done (unknown user, bad role, weak password)."""


@dataclass(frozen=True, slots=True)
class Principal:
    username: str
    role: str
    version: int = 0  # the user's token_version when the token was issued

    def can(self, role: str) -> bool:
        return ROLES.index(self.role) >= ROLES.index(role)


def check_role(role: str) -> str:
    if role not in ROLES:
        raise UserError(f"unknown role {role!r}: use one of {', '.join(ROLES)}")
    return role


def check_password(password: str) -> str:
    if len(password) < 8:
        raise UserError("a password needs at least 8 characters")
    return password


def hash_password(password: str) -> str:
    return _hasher.hash(check_password(password))


# --- users (sync: the CLI and the web role's thread pool both use these) ---
def create_user(conn: psycopg.Connection[Any], username: str, password: str, role: str) -> None:
    check_role(role)
    check_password(password)
    if not USERNAME.match(username):
        raise UserError(f"invalid user name {username!r}: 1-64 letters, digits or . _ @ -")
    try:
        conn.execute(
            "INSERT INTO users (username, password_hash, role) VALUES (%s, %s, %s)",
            (username, _hasher.hash(password), role),
        )
    except psycopg.errors.UniqueViolation:
        raise UserError(f"user {username!r} exists already") from None


# Every change that ends a user's sessions bumps token_version (tokens carry the version they
# were issued with); the caller publishes the revocation (``revoked_message``).
SET_ROLE = (
    "UPDATE users SET role = %s, updated_at = now(),"
    " token_version = token_version + CASE WHEN role = %s THEN 0 ELSE 1 END"
    " WHERE username = %s"
)
SET_HASH = (
    "UPDATE users SET password_hash = %s, updated_at = now(), token_version = token_version + 1"
    " WHERE username = %s"
)
REVOKE = "UPDATE users SET token_version = token_version + 1 WHERE username = %s"
DELETE = "DELETE FROM users WHERE username = %s"


def revoked_message(username: str) -> bytes:
    import orjson

    return orjson.dumps({"username": username})


def set_role(conn: psycopg.Connection[Any], username: str, role: str) -> None:
    check_role(role)
    cur = conn.execute(SET_ROLE, (role, role, username))
    if cur.rowcount == 0:
        raise UserError(f"user {username!r} does not exist")


def set_password(conn: psycopg.Connection[Any], username: str, password: str) -> None:
    check_password(password)
    cur = conn.execute(SET_HASH, (_hasher.hash(password), username))
    if cur.rowcount == 0:
        raise UserError(f"user {username!r} does not exist")


def delete_user(conn: psycopg.Connection[Any], username: str) -> None:
    cur = conn.execute(DELETE, (username,))
    if cur.rowcount == 0:
        raise UserError(f"user {username!r} does not exist")


def revoke(conn: psycopg.Connection[Any], username: str) -> None:
    """End every session of ``username`` (tokens issued before are refused)."""
    cur = conn.execute(REVOKE, (username,))
    if cur.rowcount == 0:
        raise UserError(f"user {username!r} does not exist")


def list_users(conn: psycopg.Connection[Any]) -> list[dict[str, Any]]:
    cur = conn.execute("SELECT username, role, created_at FROM users ORDER BY username")
    return [{"username": u, "role": r, "createdAt": c} for u, r, c in cur.fetchall()]


def count_users(conn: psycopg.Connection[Any]) -> int:
    row = conn.execute("SELECT count(*) FROM users").fetchone()
    return int(row[0]) if row else 0


USER_ROW = "SELECT password_hash, role, token_version FROM users WHERE username = %s"


def authenticate(conn: psycopg.Connection[Any], username: str, password: str) -> Principal:
    row = conn.execute(USER_ROW, (username,)).fetchone()
    return verify_password(username, row, password)


def verify_password(username: str, row: Any, password: str) -> Principal:
    """``row`` is (password_hash, role, token_version) or None for an unknown user (verified
    all the same, so the answer takes as long)."""
    try:
        _hasher.verify(row[0] if row else _DUMMY_HASH, password)
    except (VerificationError, InvalidHashError):
        row = None
    if row is None:
        raise AuthError("wrong user name or password")
    return Principal(username, row[1], int(row[2]) if len(row) > 2 else 0)


def ensure_admin(conn: psycopg.Connection[Any]) -> str | None:
    """When there is no user at all, create ``admin`` with a random password and return the
    password (to be printed once); otherwise None."""
    if count_users(conn):
        return None
    password = secrets.token_urlsafe(12)
    try:
        create_user(conn, "admin", password, "admin")
    except UserError:  # another process got there first
        return None
    return password


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
            cur = await conn.execute(
                "SELECT role, token_version FROM users WHERE username = %s", (username,)
            )
            row = await cur.fetchone()
        return (str(row[0]), int(row[1])) if row else None

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
