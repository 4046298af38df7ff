"""The built dashboard (``dashboard/dist``) at ``/``; client-side routes
(``/devices/device-001``) get ``index.html``."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from fastapi import FastAPI, Response
from fastapi.responses import FileResponse
from fastapi.staticfiles import StaticFiles
from starlette.exceptions import HTTPException as StarletteHTTPException

IMMUTABLE = "public, max-age=31536000, immutable"


class Assets(StaticFiles):
    """Vite names each file by its content's hash: a name never changes content, so
    browsers keep them for a year; ``index.html`` (which names them) is revalidated."""

    def file_response(self, *args: Any, **kwargs: Any) -> Response:
        response = super().file_response(*args, **kwargs)
        if response.status_code == 200:
            response.headers["Cache-Control"] = IMMUTABLE
        return response


def install(app: FastAPI, dist: Path | None) -> None:
    """Serve ``dist`` when it holds a build; after every other route (its catch-all is last)."""
    if dist is None or not (dist / "index.html").is_file():
        return
    app.mount("/assets", Assets(directory=dist / "assets", check_dir=False), "assets")
    index = (dist / "index.html").read_bytes()

    @app.get("/{path:path}", include_in_schema=False)
    async def spa(path: str) -> Response:
        if path.startswith(("api/", "socket.io")) or "\x00" in path:
            raise StarletteHTTPException(404)
        # a stat of a local file, as StaticFiles does: not worth a thread
        candidate = (dist / path).resolve()
        if path and candidate.is_file() and candidate.is_relative_to(dist.resolve()):  # noqa: ASYNC240
            return FileResponse(candidate)
        return Response(index, media_type="text/html", headers={"Cache-Control": "no-cache"})
