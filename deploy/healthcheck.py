"""Container health check: GET /health on this container's iotmon process; exit 0 when it
answers 200 (the image's HEALTHCHECK runs it; slim images have no curl).

The port is IOTMON_HTTP_PORT when set; otherwise read from the running command line:
``--port N`` if given, else the role's default port (``iotmon run simulator`` = 8001,
``iotmon run ingestion`` = 8002, ``iotmon up`` = 8000).
"""

from __future__ import annotations

import os
import sys
import urllib.request
from pathlib import Path

WILDCARD = {"", "0.0.0.0", "::", "127.0.0.1", "localhost"}


def iotmon_args() -> list[str]:
    """The arguments after ``iotmon`` of the first iotmon process found in /proc."""
    for cmdline in sorted(Path("/proc").glob("[0-9]*/cmdline"), key=lambda p: int(p.parent.name)):
        try:
            argv = cmdline.read_bytes().decode(errors="replace").split("\0")
        except OSError:
            continue
        for i, arg in enumerate(argv):
            if arg == "iotmon" or arg.endswith("/iotmon"):
                return [a for a in argv[i + 1 :] if a]
    return []


def port() -> int:
    if os.environ.get("IOTMON_HTTP_PORT"):
        return int(os.environ["IOTMON_HTTP_PORT"])
    args = iotmon_args()
    for i, arg in enumerate(args):
        if arg == "--port" and i + 1 < len(args):
            return int(args[i + 1])
        if arg.startswith("--port="):
            return int(arg.split("=", 1)[1])
    if len(args) >= 2 and args[0] == "run":
        from iotmon.roles import ROLES

        if args[1] in ROLES:
            return ROLES[args[1]].default_port
    return 8000


def main() -> int:
    host = os.environ.get("IOTMON_HTTP_HOST", "")
    host = "127.0.0.1" if host in WILDCARD else host
    if ":" in host:  # an IPv6 address
        host = f"[{host}]"
    url = f"http://{host}:{port()}/health"
    try:
        with urllib.request.urlopen(url, timeout=4) as response:
            return 0 if response.status == 200 else 1
    except Exception as exc:  # 503 (a dependency is down) lands here too
        print(f"{url}: {exc}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
