"""`iotmon up` with its output piped (not a terminal): every line on stderr is a JSON event
(the banner and the status line included), and Ctrl-C stops it cleanly."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from pathlib import Path

import redis

from iotmon.config import Settings
from tests.integration.helpers import free_port


def test_up_piped_writes_json_lines_only(
    settings: Settings, subprocess_env: dict[str, str], tmp_path: Path
) -> None:
    redis_url = settings.redis_url.get_secret_value().rsplit("/", 1)[0] + "/10"  # type: ignore[union-attr]
    redis.Redis.from_url(redis_url).flushdb()
    env = {k: v for k, v in subprocess_env.items() if k != "IOTMON_LOG_JSON"} | {
        "IOTMON_HTTP_PORT": str(free_port()),
        "IOTMON_REDIS_URL": redis_url,
        "IOTMON_PROCESSING_GROUP": f"{settings.topic_prefix}processing",
        "IOTMON_ALERTS_GROUP": f"{settings.topic_prefix}alerts",
    }
    err = tmp_path / "stderr"
    with err.open("wb") as e, (tmp_path / "stdout").open("wb") as o:
        proc = subprocess.Popen([sys.executable, "-m", "iotmon", "up"], env=env, stdout=o, stderr=e)
    try:
        deadline = time.monotonic() + 90
        while "readings/s stored" not in err.read_text():  # the status line, as an event
            assert proc.poll() is None, err.read_text()[-3000:]
            assert time.monotonic() < deadline, err.read_text()[-3000:]
            time.sleep(0.3)
    finally:
        proc.send_signal(signal.SIGINT)
        code = proc.wait(60)
    assert code == 0, err.read_text()[-3000:]
    lines = [line for line in err.read_text().splitlines() if line.strip()]
    events = []
    for line in lines:
        try:
            events.append(json.loads(line))
        except ValueError:
            raise AssertionError(f"not JSON: {line!r}") from None
    assert all({"event", "level", "timestamp"} <= e.keys() for e in events)
    banner = next(e for e in events if e["event"] == "iotmon running")
    assert "web" in banner["roles"]
    assert any("/health" in line for line in banner["banner"])
    assert "\x1b[" not in err.read_text()  # no colours in a file
