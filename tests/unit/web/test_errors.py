"""web/errors.py: a domain error answers as the table says, a subclass as its nearest listed
base class, and something that is not a domain error is not turned into one."""

from __future__ import annotations

import pytest

from iotmon.devices.service import ConfigError, DeviceNotFound
from iotmon.mqtt import provisioning
from iotmon.mqtt.credentials import BrokerUnavailable, CredentialsError
from iotmon.profiles.service import RangeConflict
from iotmon.users.models import UserError, UserExists, UserNotFound
from iotmon.web.errors import DOMAIN_ERRORS, as_api_error


@pytest.mark.parametrize(
    ("exc", "status", "code"),
    [
        (DeviceNotFound("device 'x' does not exist"), 404, "not_found"),
        (UserNotFound("bob"), 404, "not_found"),  # before its base class UserError (422)
        (UserExists("bob"), 409, "conflict"),
        (UserError("a password needs at least 8 characters"), 422, "validation_error"),
        (provisioning.NotConfigured("no admin URL"), 503, "mqtt_not_configured"),
        (CredentialsError("something else"), 503, "mqtt_error"),
    ],
)
def test_a_domain_error_answers_as_its_table_row(exc: Exception, status: int, code: str) -> None:
    answer = as_api_error(exc)
    assert (answer.status, answer.code, answer.message) == (status, code, str(exc))


def test_details_and_headers_come_along() -> None:
    answer = as_api_error(ConfigError("normalMin (5) must be below normalMax (1)", {"changes": {}}))
    assert answer.details == {"changes": {}}
    assert as_api_error(BrokerUnavailable("down")).headers == {"Retry-After": "5"}


def test_a_range_conflict_names_its_field() -> None:
    exc = RangeConflict("channels.0.range", "differs from another profile's")
    answer = as_api_error(exc)
    assert answer.status == 422
    assert answer.message == f"invalid request: channels.0.range: {exc}"
    assert answer.details == [{"field": "channels.0.range", "message": str(exc)}]


def test_other_errors_are_not_domain_errors() -> None:
    assert LookupError not in DOMAIN_ERRORS
    assert ValueError not in DOMAIN_ERRORS
    with pytest.raises(LookupError):
        as_api_error(KeyError("x"))
