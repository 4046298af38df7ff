"""Device credentials without a broker: the hash kept in PostgreSQL, the topic rule, and a
bad admin URL refused before any connection."""

from __future__ import annotations

import base64
import hashlib

import pytest
from hypothesis import given
from hypothesis import strategies as st

from iotmon.mqtt.credentials import (
    CredentialsError,
    DynsecAdmin,
    device_topics,
    hash_password,
    verify_password,
)


@given(password=st.text(min_size=1, max_size=64))
def test_the_hash_verifies_its_password_and_no_other(password: str) -> None:
    encoded = hash_password(password)
    assert verify_password(password, encoded)
    assert not verify_password(password + "x", encoded)


def test_the_hash_is_mosquittos_pbkdf2_sha512_format() -> None:
    encoded = hash_password("s3cret")
    empty, kind, iterations, salt, digest = encoded.split("$")
    assert (empty, kind, iterations) == ("", "7", "101")
    raw_salt = base64.b64decode(salt)
    assert len(raw_salt) == 12
    assert base64.b64decode(digest) == hashlib.pbkdf2_hmac("sha512", b"s3cret", raw_salt, 101)
    assert hash_password("s3cret") != encoded  # salted


@pytest.mark.parametrize("encoded", ["", "plain", "$6$abc$def", "$7$x$AA==$AA==", "$7$101$!!$AA=="])
def test_a_malformed_hash_verifies_nothing(encoded: str) -> None:
    assert not verify_password("anything", encoded)


def test_a_device_may_use_the_topics_whose_second_level_is_its_id() -> None:
    assert device_topics("f2-e4fd45f654be") == ("+/f2-e4fd45f654be/#",)
    assert device_topics("device-001", "site-a/") == ("site-a/+/device-001/#",)


@pytest.mark.parametrize(
    "url",
    [
        "mqtt://127.0.0.1:1883",
        "http://a:b@host:1",
        "nonsense",
        "mqtt://a:b@h:99999",
        "mqtt://a:b@h:x",
    ],
)
def test_an_admin_url_without_credentials_is_refused_at_once(url: str) -> None:
    with pytest.raises(CredentialsError, match="mqtt://<user>:<password>@host:port"):
        DynsecAdmin(url)
