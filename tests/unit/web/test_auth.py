from __future__ import annotations

import time

import pytest

from iotmon.web import auth


def test_a_verified_token_is_remembered_but_still_expires() -> None:
    tokens = auth.Tokens("a-signing-key-of-at-least-32-characters", ttl_s=1)
    token, exp = tokens.issue(auth.Principal("night-shift", "operator"))
    assert tokens.verify(token) == auth.Principal("night-shift", "operator")
    assert tokens.verify(token) == auth.Principal("night-shift", "operator")  # remembered
    time.sleep(max(0.0, exp - time.time()) + 0.05)
    with pytest.raises(auth.AuthError, match="expired"):
        tokens.verify(token)
    forged = auth.Tokens("another-key-of-at-least-32-characters-long").issue(
        auth.Principal("night-shift", "admin")
    )[0]
    with pytest.raises(auth.AuthError, match="not valid"):
        tokens.verify(forged)
    with pytest.raises(auth.AuthError, match="required"):
        tokens.verify(None)
