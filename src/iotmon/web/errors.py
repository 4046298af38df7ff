"""How every error becomes an answer in the error envelope (DESIGN.md 4.7): ``ApiError`` as
it is, the domain errors by the one table below, and the framework's own (validation, 404,
405) in the same shape."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import psycopg
from fastapi import FastAPI, Request, Response
from fastapi.exceptions import RequestValidationError
from starlette.exceptions import HTTPException as StarletteHTTPException

from iotmon.alerts.models import AlertError, AlertNotFound
from iotmon.devices.service import ConfigError, DeviceNotFound
from iotmon.mqtt import provisioning
from iotmon.mqtt.credentials import BrokerRefused, BrokerUnavailable, CredentialsError
from iotmon.profiles import service as profiles
from iotmon.users.models import UserError, UserExists, UserNotFound
from iotmon.web.envelope import ApiError, error_response


def _range_conflict(exc: Any) -> ApiError:
    """A sensor type's range that differs from another profile's: a field's problem."""
    return ApiError(
        422,
        "validation_error",
        f"invalid request: {exc.field}: {exc}",
        [{"field": exc.field, "message": str(exc)}],
    )


# A domain error -> (HTTP status, error code, headers), or the function that makes its answer.
# A subclass not listed answers as its nearest listed base class. The message is the error's
# own; ``details`` its attribute of that name, if it has one.
DOMAIN_ERRORS: dict[
    type[Exception], tuple[int, str, dict[str, str]] | Callable[[Any], ApiError]
] = {
    DeviceNotFound: (404, "not_found", {}),
    ConfigError: (422, "invalid_config", {}),
    profiles.ProfileNotFound: (404, "not_found", {}),
    profiles.DeviceNotFound: (404, "not_found", {}),
    profiles.ProfileExists: (409, "conflict", {}),
    profiles.ProfileInUse: (409, "conflict", {}),
    profiles.RangeConflict: _range_conflict,
    AlertNotFound: (404, "not_found", {}),
    AlertError: (409, "conflict", {}),
    UserNotFound: (404, "not_found", {}),
    UserExists: (409, "conflict", {}),
    UserError: (422, "validation_error", {}),
    provisioning.DeviceNotFound: (404, "not_found", {}),
    provisioning.NoCredentials: (404, "not_found", {}),
    provisioning.NotConfigured: (503, "mqtt_not_configured", {}),
    BrokerUnavailable: (503, "broker_unavailable", {"Retry-After": "5"}),
    BrokerRefused: (502, "broker_refused", {}),
    CredentialsError: (503, "mqtt_error", {}),
}


def as_api_error(exc: Exception) -> ApiError:
    """The answer to a domain error of ``DOMAIN_ERRORS``."""
    for cls in type(exc).__mro__:
        known = DOMAIN_ERRORS.get(cls)
        if callable(known):
            return known(exc)
        if known is not None:
            status, code, headers = known
            return ApiError(status, code, str(exc), getattr(exc, "details", None), **headers)
    raise LookupError(f"{type(exc).__name__} is not a domain error")


async def _api_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, ApiError)
    return error_response(exc)


async def _domain_error(request: Request, exc: Exception) -> Response:
    return error_response(as_api_error(exc))


async def _invalid(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, RequestValidationError)
    problems = [
        {
            "field": ".".join(str(p) for p in e.get("loc", ()) if p != "body"),
            "message": e.get("msg", "invalid"),
        }
        for e in exc.errors()
    ]
    summary = "; ".join(f"{p['field']}: {p['message']}" for p in problems)
    return error_response(
        ApiError(422, "validation_error", f"invalid request: {summary}", problems)
    )


async def _not_unicode(request: Request, exc: Exception) -> Response:
    # JSON allows "\udaf4" (half a character); text stored or sent on must not.
    return error_response(
        ApiError(422, "validation_error", "text must be valid Unicode (no lone surrogates)")
    )


async def _overflow(request: Request, exc: Exception) -> Response:
    # A date at the edge of the calendar (0001-01-01 minus a day, 9999-12-31 plus an offset)
    # is out of range: the request's fault.
    return error_response(
        ApiError(422, "validation_error", "a value is out of range (a date too far?)")
    )


async def _bad_data(request: Request, exc: Exception) -> Response:
    # What PostgreSQL cannot hold (a NUL character, a number out of its range) is the
    # request's fault, not the server's.
    return error_response(ApiError(422, "validation_error", f"invalid value: {exc}"))


async def _http_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, StarletteHTTPException)
    code = {404: "not_found", 405: "method_not_allowed"}.get(exc.status_code, "error")
    message = (
        f"no such endpoint: {request.method} {request.url.path}"
        if exc.status_code in (404, 405)
        else str(exc.detail)
    )
    return error_response(ApiError(exc.status_code, code, message))


HANDLERS: dict[type[Exception], Callable[[Request, Exception], Any]] = {
    ApiError: _api_error,
    RequestValidationError: _invalid,
    UnicodeEncodeError: _not_unicode,
    OverflowError: _overflow,
    psycopg.DataError: _bad_data,
    StarletteHTTPException: _http_error,
}


def install(app: FastAPI) -> None:
    for cls, handler in HANDLERS.items():
        app.add_exception_handler(cls, handler)
    for cls in DOMAIN_ERRORS:
        app.add_exception_handler(cls, _domain_error)
