"""Users' roles and names, the principal a token stands for, and the errors of user changes."""

from __future__ import annotations

import re
from dataclasses import dataclass

ROLES: tuple[str, ...] = ("viewer", "operator", "admin")  # in rank order
USERNAME = re.compile(r"^[A-Za-z0-9_.@-]{1,64}$")


class AuthError(Exception):
    """Credentials or a token that do not let someone in (the message says why)."""


class UserError(Exception):
    """A user request that cannot be done (unknown user, bad role, weak password)."""


class UserNotFound(UserError):
    def __init__(self, username: str) -> None:
        super().__init__(f"user {username!r} does not exist")


class UserExists(UserError):
    def __init__(self, username: str) -> None:
        super().__init__(f"user {username!r} exists already")


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


def check_username(username: str) -> str:
    if not USERNAME.match(username):
        raise UserError(f"invalid user name {username!r}: 1-64 letters, digits or . _ @ -")
    return username
