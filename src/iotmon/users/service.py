"""Every query of the users table, for the CLI (sync connections) and the API (async ones):
the same statements, the same checks and errors. Passwords are argon2 hashes.

Every change that ends a user's sessions bumps ``token_version`` (tokens carry the version they
were issued with); the caller publishes the revocation (``web.auth.revoked_message``)."""

from __future__ import annotations

import secrets
from typing import Any

import psycopg
from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError

from iotmon.users.models import (
    AuthError,
    Principal,
    UserExists,
    UserNotFound,
    check_password,
    check_role,
    check_username,
)

_hasher = PasswordHasher()
# Verifying an unknown user costs the same as a known one: no user enumeration by timing.
_DUMMY_HASH = _hasher.hash(secrets.token_urlsafe(16))

USER_ROW = "SELECT password_hash, role, token_version FROM users WHERE username = %s"
SESSION_ROW = "SELECT role, token_version FROM users WHERE username = %s"
LIST = "SELECT username, role, created_at FROM users ORDER BY username"
COUNT = "SELECT count(*) FROM users"
INSERT = (
    "INSERT INTO users (username, password_hash, role) VALUES (%s, %s, %s)"
    " ON CONFLICT (username) DO NOTHING"
)
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


# --- passwords ---
def hash_password(password: str) -> str:
    return _hasher.hash(check_password(password))


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


def _found(rowcount: int, username: str) -> None:
    if rowcount == 0:
        raise UserNotFound(username)


def _listed(rows: list[tuple[Any, ...]]) -> list[dict[str, Any]]:
    return [{"username": u, "role": r, "createdAt": c} for u, r, c in rows]


# --- sync (the CLI, the web role's start) ---
def create_user(conn: psycopg.Connection[Any], username: str, password: str, role: str) -> None:
    check_role(role)
    check_password(password)
    check_username(username)
    if conn.execute(INSERT, (username, _hasher.hash(password), role)).rowcount == 0:
        raise UserExists(username)


def set_role(conn: psycopg.Connection[Any], username: str, role: str) -> None:
    check_role(role)
    _found(conn.execute(SET_ROLE, (role, role, username)).rowcount, username)


def set_password(conn: psycopg.Connection[Any], username: str, password: str) -> None:
    check_password(password)
    _found(conn.execute(SET_HASH, (_hasher.hash(password), username)).rowcount, username)


def delete_user(conn: psycopg.Connection[Any], username: str) -> None:
    _found(conn.execute(DELETE, (username,)).rowcount, username)


def revoke(conn: psycopg.Connection[Any], username: str) -> None:
    """End every session of ``username`` (tokens issued before are refused)."""
    _found(conn.execute(REVOKE, (username,)).rowcount, username)


def list_users(conn: psycopg.Connection[Any]) -> list[dict[str, Any]]:
    return _listed(conn.execute(LIST).fetchall())


def count_users(conn: psycopg.Connection[Any]) -> int:
    row = conn.execute(COUNT).fetchone()
    return int(row[0]) if row else 0


def ensure_admin(conn: psycopg.Connection[Any]) -> str | None:
    """When there is no user at all, create ``admin`` with a random password and return the
    password (to be printed once); otherwise None."""
    if count_users(conn):
        return None
    password = secrets.token_urlsafe(12)
    try:
        create_user(conn, "admin", password, "admin")
    except UserExists:  # another process got there first
        return None
    return password


# --- async (the API; hashing happens before, on no connection: web/login.py) ---
async def credentials(conn: psycopg.AsyncConnection[Any], username: str) -> Any:
    """(password_hash, role, token_version), or None: for ``verify_password``."""
    cur = await conn.execute(USER_ROW, (username,))
    return await cur.fetchone()


async def session_state(
    conn: psycopg.AsyncConnection[Any], username: str
) -> tuple[str, int] | None:
    """(role, token_version) of ``username``, or None when there is no such user."""
    cur = await conn.execute(SESSION_ROW, (username,))
    row = await cur.fetchone()
    return (str(row[0]), int(row[1])) if row else None


async def all_users(conn: psycopg.AsyncConnection[Any]) -> list[dict[str, Any]]:
    cur = await conn.execute(LIST)
    return _listed(await cur.fetchall())


async def exists(conn: psycopg.AsyncConnection[Any], username: str) -> bool:
    return await credentials(conn, username) is not None


async def add(conn: psycopg.AsyncConnection[Any], username: str, hashed: str, role: str) -> None:
    """Store a user whose password is hashed already."""
    cur = await conn.execute(INSERT, (username, hashed, check_role(role)))
    if cur.rowcount == 0:
        raise UserExists(username)


async def change_role(conn: psycopg.AsyncConnection[Any], username: str, role: str) -> None:
    cur = await conn.execute(SET_ROLE, (check_role(role), role, username))
    _found(cur.rowcount, username)


async def change_hash(conn: psycopg.AsyncConnection[Any], username: str, hashed: str) -> None:
    cur = await conn.execute(SET_HASH, (hashed, username))
    _found(cur.rowcount, username)


async def remove(conn: psycopg.AsyncConnection[Any], username: str) -> None:
    cur = await conn.execute(DELETE, (username,))
    _found(cur.rowcount, username)


async def end_sessions(conn: psycopg.AsyncConnection[Any], username: str) -> None:
    """Logout: every token of ``username`` issued so far stops working."""
    await conn.execute(REVOKE, (username,))
