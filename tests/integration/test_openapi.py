"""Schemathesis against the web role's own OpenAPI document, on a running `iotmon run web`:
for every operation, generated requests (valid and, negated, invalid) never get a 5xx, and every
response matches the schema the document declares for its status code."""

from __future__ import annotations

import subprocess
import sys
import time
from collections.abc import Iterator

import httpx
import psycopg
import pytest
import schemathesis
from hypothesis import HealthCheck, given
from hypothesis import settings as hypothesis_settings
from hypothesis import strategies as st
from schemathesis import GenerationMode
from schemathesis.checks import (
    content_type_conformance,
    not_a_server_error,
    response_schema_conformance,
)

from iotmon.users.service import create_user
from tests.integration.helpers import free_port

EXAMPLES_PER_OPERATION = 25


@pytest.fixture
def web_url(subprocess_env: dict[str, str], database_url: str) -> Iterator[str]:
    with psycopg.connect(database_url, autocommit=True) as conn:
        create_user(conn, "fuzzer", "fuzzer-password", "admin")
    port = free_port()
    proc = subprocess.Popen(
        [sys.executable, "-m", "iotmon", "run", "web"],
        env=subprocess_env | {"IOTMON_HTTP_PORT": str(port), "IOTMON_RATE_LIMIT_PER_MINUTE": "0"},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 60
    while True:
        try:
            if httpx.get(f"{url}/api/health", timeout=2).status_code == 200:
                break
        except httpx.HTTPError:
            pass
        if proc.poll() is not None or time.monotonic() > deadline:
            proc.kill()
            pytest.fail(f"the web role did not start: {proc.stderr.read().decode()[-2000:]}")  # type: ignore[union-attr]
        time.sleep(0.2)
    yield url
    proc.terminate()
    proc.wait(20)


def test_no_server_errors_and_every_response_matches_its_schema(web_url: str) -> None:
    token = httpx.post(
        f"{web_url}/api/auth/token", json={"username": "fuzzer", "password": "fuzzer-password"}
    ).json()["data"]["accessToken"]
    headers = {"Authorization": f"Bearer {token}"}
    schema = schemathesis.openapi.from_url(f"{web_url}/api/openapi.json")
    failures: list[str] = []
    operations = 0
    for result in schema.get_all_operations():
        operation = result.ok()
        operations += 1

        cases = st.one_of(
            operation.as_strategy(generation_mode=GenerationMode.POSITIVE),
            operation.as_strategy(generation_mode=GenerationMode.NEGATIVE),
        )

        @given(case=cases)
        @hypothesis_settings(
            max_examples=EXAMPLES_PER_OPERATION,
            deadline=None,
            suppress_health_check=list(HealthCheck),
            database=None,
        )
        def check(case: schemathesis.Case) -> None:
            case.call_and_validate(
                base_url=web_url,
                headers=headers,
                checks=[not_a_server_error, response_schema_conformance, content_type_conformance],
                timeout=30,
            )

        try:
            check()
        except (Exception, BaseExceptionGroup) as exc:  # collect every operation's failure
            failures.append(f"{operation.label}: {exc}")
    assert operations >= 20
    assert not failures, "\n\n".join(failures)
