"""``/api/auth`` (log in, log out) and ``/api/users`` (admin): users, roles, passwords.
Repeated failed logins lock the account, and the client address, out for a while
(web/login.py); argon2 runs on no database connection, in a thread pool of its own."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from fastapi import APIRouter, Path, Request
from fastapi.responses import Response
from pydantic import BaseModel, ConfigDict, Field

from iotmon.timefmt import iso_utc
from iotmon.users import service
from iotmon.users.models import USERNAME, AuthError
from iotmon.web import login
from iotmon.web.deps import ADMIN, Admin, State, Viewer
from iotmon.web.envelope import ApiError, Envelope, errors, ok
from iotmon.web.state import ApiState

UsernamePath = Annotated[str, Path(pattern=USERNAME.pattern)]
Role = Literal["viewer", "operator", "admin"]


class Credentials(BaseModel):
    username: str = Field(min_length=1, max_length=64)
    password: str = Field(min_length=1, max_length=256)


class PasswordChange(BaseModel):
    """A new password; ``currentPassword`` is needed when changing one's own (an admin
    setting another user's does not give it)."""

    model_config = ConfigDict(extra="forbid")
    password: str = Field(min_length=8, max_length=256)
    currentPassword: str | None = Field(default=None, max_length=256)


class NewUser(BaseModel):
    model_config = ConfigDict(extra="forbid")
    username: str = Field(pattern=USERNAME.pattern)
    password: str = Field(min_length=8, max_length=256)
    role: Role = "viewer"


class RoleChange(BaseModel):
    model_config = ConfigDict(extra="forbid")
    role: Role


class TokenOut(BaseModel):
    accessToken: str
    tokenType: Literal["bearer"]
    expiresAt: str
    username: str
    role: Role


class TokenEnvelope(BaseModel):
    success: bool
    data: TokenOut
    meta: dict[str, Any]


auth_router = APIRouter(prefix="/api", tags=["auth"], responses=errors())
# tags: "auth" first, as the router these endpoints came from had it (the OpenAPI stays as it was)
router = APIRouter(prefix="/api", tags=["auth"], responses=errors())


def _locked(wait: int) -> ApiError:
    return ApiError(
        429,
        "locked_out",
        f"too many failed logins: retry in {wait} s",
        {"retryAfterS": wait},
        **{"Retry-After": str(wait)},
    )


async def _hash(state: ApiState, password: str) -> str:
    try:
        return await state.hashing.run(service.hash_password, password)
    except login.Busy:
        raise ApiError(
            503,
            "busy",
            "too many password hashes at once: retry in a second",
            **{"Retry-After": "1"},
        ) from None


@auth_router.post(
    "/auth/token",
    response_model=TokenEnvelope,
    responses=errors({401: "wrong user name or password"}),
)
async def token(body: Credentials, request: Request, state: State) -> Response:
    """Log in with ``{"username", "password"}``; the token goes in
    ``Authorization: Bearer <token>`` and in the Socket.IO ``auth`` payload.
    Repeated failures lock the account, and the client address, out for a while
    (429 with Retry-After); too many logins at once are answered 503."""
    address = state.rate_limit.client(request.scope)
    wait = await state.backoff.wait_s(body.username, address)
    if wait:
        raise _locked(wait)
    # The row is read on a pooled connection given back at once: argon2 runs on no
    # connection, in a thread pool of its own (web/login.py).
    async with state.pool.connection() as conn:
        row = await service.credentials(conn, body.username)
    try:
        who = await state.hashing.run(service.verify_password, body.username, row, body.password)
    except login.Busy:
        raise ApiError(
            503,
            "busy",
            "too many logins at once: retry in a second",
            **{"Retry-After": "1"},
        ) from None
    except AuthError as exc:
        lock = await state.backoff.failed(body.username, address)
        if lock:
            state.log.warning("login locked out", user=body.username, address=address, s=lock)
        raise ApiError(401, "unauthorized", str(exc)) from None
    await state.backoff.succeeded(body.username, address)
    access, exp = state.tokens.issue(who)
    return ok(
        {
            "accessToken": access,
            "tokenType": "bearer",
            "expiresAt": iso_utc(exp),
            "username": who.username,
            "role": who.role,
        }
    )


@auth_router.post("/auth/logout", response_model=Envelope)
async def logout(who: Viewer, state: State) -> Response:
    """End every session of the caller: this token and any other of the same user stop
    working (REST at once, Socket.IO sockets are disconnected)."""
    async with state.pool.connection() as conn:
        await service.end_sessions(conn, who.username)
    await state.revoked(who.username)
    return ok({"username": who.username, "loggedOut": True})


@router.get("/users", tags=["users"], response_model=Envelope, dependencies=[ADMIN])
async def list_users(state: State) -> Response:
    """Users and their roles (admin)."""
    async with state.pool.connection() as conn:
        users = await service.all_users(conn)
    return ok({"users": [u | {"createdAt": iso_utc(u["createdAt"])} for u in users]})


@router.post(
    "/users", tags=["users"], response_model=Envelope, status_code=201, dependencies=[ADMIN]
)
async def create_user(body: NewUser, state: State) -> Response:
    """Create a user (admin)."""
    async with state.pool.connection() as conn:
        if await service.exists(conn, body.username):
            raise ApiError(409, "conflict", f"user {body.username!r} exists already")
    hashed = await _hash(state, body.password)  # on no connection
    async with state.pool.connection() as conn:
        await service.add(conn, body.username, hashed, body.role)
    return ok({"username": body.username, "role": body.role}, status=201)


@router.put("/users/{username}/role", tags=["users"], response_model=Envelope)
async def set_user_role(
    username: UsernamePath, body: RoleChange, who: Admin, state: State
) -> Response:
    """Change a user's role (admin); the user's sessions end (log in again)."""
    async with state.pool.connection() as conn:
        await service.change_role(conn, username, body.role)
    await state.revoked(username)
    return ok({"username": username, "role": body.role})


@router.delete(
    "/users/{username}",
    tags=["users"],
    response_model=Envelope,
    responses=errors({404: "no such user", 409: "deleting oneself"}),
)
async def delete_user(username: UsernamePath, who: Admin, state: State) -> Response:
    """Delete a user (admin); the user's sessions end at once."""
    if username == who.username:
        raise ApiError(409, "conflict", "an admin cannot delete their own user")
    async with state.pool.connection() as conn:
        await service.remove(conn, username)
    await state.revoked(username)
    return ok({"deleted": username})


@router.put(
    "/users/{username}/password",
    tags=["users"],
    response_model=Envelope,
    responses=errors({404: "no such user", 503: "too many password hashes at once"}),
)
async def set_password(
    username: UsernamePath,
    body: PasswordChange,
    request: Request,
    who: Viewer,
    state: State,
) -> Response:
    """Change a password: one's own (with ``currentPassword``), or anyone's (admin).
    Every session of that user ends."""
    if username != who.username and not who.can("admin"):
        raise ApiError(403, "forbidden", "only an admin changes another user's password")
    if username == who.username and not who.can("admin"):
        if body.currentPassword is None:
            raise ApiError(422, "validation_error", "currentPassword is required")
        address = state.rate_limit.client(request.scope)
        wait = await state.backoff.wait_s(username, address)
        if wait:
            raise _locked(wait)
        async with state.pool.connection() as conn:
            row = await service.credentials(conn, username)
        try:
            await state.hashing.run(service.verify_password, username, row, body.currentPassword)
        except login.Busy:
            raise ApiError(503, "busy", "retry in a second", **{"Retry-After": "1"}) from None
        except AuthError:
            await state.backoff.failed(username, address)
            raise ApiError(403, "forbidden", "currentPassword is wrong") from None
    hashed = await _hash(state, body.password)
    async with state.pool.connection() as conn:
        await service.change_hash(conn, username, hashed)
    await state.revoked(username)
    return ok({"username": username, "passwordChanged": True})
