"""The REST API's answers (DESIGN.md 4.7): the envelope ``{"success", "data", "meta"}``, the
error envelope and ``ApiError``, the OpenAPI description of errors, and the path and query
types several routers share. A leaf: it imports no router and nothing of the app."""

from __future__ import annotations

import json
from typing import Annotated, Any

import orjson
from fastapi import Path, Query, Response
from pydantic import BaseModel

from iotmon.readings.models import DEVICE_ID
from iotmon.timefmt import iso_utc

DeviceIdPath = Annotated[str, Path(pattern=DEVICE_ID.pattern, description="e.g. device-001")]
DeviceIdQuery = Annotated[str | None, Query(alias="deviceId", pattern=DEVICE_ID.pattern)]


class ApiError(Exception):
    """An error answered in the envelope of DESIGN.md 4.7."""

    def __init__(
        self, status: int, code: str, message: str, details: Any = None, **headers: str
    ) -> None:
        super().__init__(message)
        self.status, self.code, self.message = status, code, message
        self.details = details
        self.headers = headers


def ok(data: Any, meta: dict[str, Any] | None = None, status: int = 200) -> Response:
    body: dict[str, Any] = {"success": True, "data": data}
    body["meta"] = {"timestamp": iso_utc(), **(meta or {})}
    return Response(orjson.dumps(body), status_code=status, media_type="application/json")


def error_response(exc: ApiError) -> Response:
    body = {
        "success": False,
        "error": {"code": exc.code, "message": exc.message, "details": exc.details},
    }
    try:
        content = orjson.dumps(body)
    except orjson.JSONEncodeError:  # e.g. a lone surrogate echoed from the request
        content = json.dumps(body, ensure_ascii=True, default=str).encode()
    return Response(
        content,
        status_code=exc.status,
        media_type="application/json",
        headers=exc.headers or None,
    )


class Envelope(BaseModel):
    """``{"success", "data", "meta"}``; each endpoint's model narrows ``data``."""

    success: bool
    data: Any
    meta: dict[str, Any]


class ErrorBody(BaseModel):
    code: str
    message: str
    details: Any = None


class ErrorEnvelope(BaseModel):
    success: bool
    error: ErrorBody


COMMON_ERRORS = {
    401: "no token, or an invalid or expired one",
    403: "the user's role does not allow this",
    422: "invalid parameters or body (the message names each field)",
    429: "more requests than the rate limit allows; see Retry-After",
}


def errors(described: dict[int, str] | None = None) -> dict[int | str, dict[str, Any]]:
    """OpenAPI responses for error codes, each with the error envelope as its schema."""
    return {
        code: {"model": ErrorEnvelope, "description": text}
        for code, text in (COMMON_ERRORS | (described or {})).items()
    }
