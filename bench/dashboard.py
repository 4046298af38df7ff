"""Dashboard benchmark: the production bundle's size, and frames per second on the Overview.

Bundle: every file of ``dashboard/dist`` after ``scripts/dashboard.sh build`` (a Vite
production build), raw and gzip (level 6, the usual server setting), per
chunk and in total, and what the browser fetched to show the Overview after logging in.

Frame rate: ``iotmon up`` as a child process on the real Kafka, PostgreSQL and Redis (a fresh
database, topic prefix and Redis database), the simulator at its default rates with the five
devices and then with N, serving a copy of the build. Debian's Chromium, headless, driven by
Playwright, logs in at 1440x900 and stays on the Overview while a requestAnimationFrame
counter injected into the page records every frame for the measuring time (then as long
again while the page scrolls 20 px a frame, when it is taller than the window); the figures are
frames per 1 s window (min, average), frame intervals (p50/p99/max, frames longer than
33.3 ms, i.e. below 30 fps), long tasks (> 50 ms) and how busy the page's main thread was
(Chromium's own ``Performance.getMetrics`` over CDP: script, layout, style).

Run: ``iotmon bench dashboard`` with the services of ``scripts/infra.sh`` in the environment.
"""

from __future__ import annotations

import gzip
import itertools
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import orjson
from rich.console import Console

from common import (
    BENCH_PASSWORD,
    BENCH_USER,
    Sandbox,
    free_port,
    machine,
    write_section,
)
from iotmon.config import Settings

START, END = "<!-- bench:dashboard:start -->", "<!-- bench:dashboard:end -->"
REDIS_DB = 14  # bench alerts uses 11, api 12, ws 13; the e2e tests 10
REPO = Path(__file__).resolve().parents[1]
VIEWPORT = {"width": 1440, "height": 900}
SLOW_FRAME_MS = 1000 / 30

# Every frame's timestamp for `ms` milliseconds, and the long tasks meanwhile; with `step`,
# the page scrolls that many pixels a frame, down to the end and back up.
FRAMES_JS = """
([ms, step]) => new Promise((resolve) => {
  const frames = [];
  const longTasks = [];
  let observer = null;
  try {
    observer = new PerformanceObserver((list) => {
      for (const e of list.getEntries()) longTasks.push(e.duration);
    });
    observer.observe({ type: "longtask", buffered: false });
  } catch (e) { observer = null; }
  let start = null, dir = 1;
  const tick = (t) => {
    if (start === null) start = t;
    frames.push(t - start);
    if (step) {
      const el = document.scrollingElement;
      if (el.scrollTop + innerHeight >= el.scrollHeight - 1) dir = -1;
      else if (el.scrollTop <= 0) dir = 1;
      window.scrollBy(0, dir * step);
    }
    if (t - start < ms) requestAnimationFrame(tick);
    else {
      if (observer) observer.disconnect();
      resolve({ frames, longTasks, nodes: document.getElementsByTagName("*").length });
    }
  };
  requestAnimationFrame(tick);
})
"""


def _gzip_size(data: bytes) -> int:
    return len(gzip.compress(data, compresslevel=6, mtime=0))


def build(console: Console) -> Path:
    console.print("  building the dashboard (scripts/dashboard.sh build) ...")
    done = subprocess.run(
        [str(REPO / "scripts" / "dashboard.sh"), "build"], capture_output=True, text=True
    )
    if done.returncode != 0:
        raise RuntimeError(f"scripts/dashboard.sh build failed:\n{done.stdout}\n{done.stderr}")
    dist = REPO / "dashboard" / "dist"
    if not (dist / "index.html").is_file():
        raise RuntimeError(f"no {dist / 'index.html'} after the build")
    return dist


def bundle_sizes(dist: Path) -> dict[str, Any]:
    """Every file of the build, raw and gzip, the largest (gzip) first."""
    files = []
    for path in sorted(dist.rglob("*")):
        if not path.is_file() or path.suffix == ".map":
            continue
        data = path.read_bytes()
        files.append(
            {
                "file": path.relative_to(dist).as_posix(),
                "raw_bytes": len(data),
                "gzip_bytes": _gzip_size(data),
            }
        )
    files.sort(key=lambda f: -f["gzip_bytes"])
    return {
        "files": files,
        "total_raw_bytes": sum(f["raw_bytes"] for f in files),
        "total_gzip_bytes": sum(f["gzip_bytes"] for f in files),
        "js_gzip_bytes": sum(f["gzip_bytes"] for f in files if f["file"].endswith(".js")),
        "css_gzip_bytes": sum(f["gzip_bytes"] for f in files if f["file"].endswith(".css")),
    }


def _pct(values: list[float], q: float) -> float:
    values = sorted(values)
    return values[min(len(values) - 1, int(q * len(values)))] if values else 0.0


def frame_figures(frames: list[float], seconds: float) -> dict[str, Any]:
    """fps per whole 1 s window and frame-interval figures from rAF timestamps (ms)."""
    windows = [0] * max(1, int(seconds))
    for t in frames[1:]:
        i = int(t // 1000)
        if i < len(windows):
            windows[i] += 1
    gaps = [b - a for a, b in itertools.pairwise(frames)]
    return {
        "fps_windows": windows,
        "fps_min": min(windows),
        "fps_avg": round(len(gaps) / (frames[-1] / 1000), 1) if len(frames) > 1 else 0.0,
        "frame_ms_p50": round(_pct(gaps, 0.5), 1),
        "frame_ms_p99": round(_pct(gaps, 0.99), 1),
        "frame_ms_max": round(max(gaps, default=0.0), 1),
        "frames": len(gaps),
        "frames_over_33ms": sum(1 for g in gaps if g > SLOW_FRAME_MS),
    }


class _System:
    """`iotmon up` with ``devices`` simulated devices on a fresh database, topics and Redis
    database of the real services."""

    def __init__(self, settings: Settings, devices: int, dist: Path, workdir: Path) -> None:
        self.devices = devices
        self.box = Sandbox.open(settings, redis_db=REDIS_DB)
        port = free_port()
        self.url = f"http://127.0.0.1:{port}"
        env = self.box.env | {
            "IOTMON_SIMULATOR_DEVICES": str(devices),
            "IOTMON_HTTP_PORT": str(port),
            "IOTMON_RATE_LIMIT_PER_MINUTE": "0",
            "IOTMON_DASHBOARD_DIR": str(dist),
            "IOTMON_DATA_DIR": str(workdir),
        }
        self.log = workdir / "up.log"
        with self.log.open("wb") as out:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "iotmon", "up"],
                env=env,
                cwd=workdir,
                stdout=out,
                stderr=subprocess.STDOUT,
            )

    def wait_ready(self, timeout_s: float = 120) -> None:
        """Until every device has a live reading in the API."""
        deadline = time.monotonic() + timeout_s
        with httpx.Client(base_url=self.url, timeout=10) as http:
            while True:
                if self.proc.poll() is not None:
                    raise RuntimeError(f"iotmon up exited:\n{self.log.read_text()[-3000:]}")
                try:
                    token = http.post(
                        "/api/auth/token", json={"username": BENCH_USER, "password": BENCH_PASSWORD}
                    ).json()["data"]["accessToken"]
                    live = 0
                    for offset in range(0, self.devices, 1000):
                        page = http.get(
                            "/api/devices",
                            params={"limit": 1000, "offset": offset},
                            headers={"Authorization": f"Bearer {token}"},
                        ).json()["data"]["devices"]
                        live += sum(1 for d in page if d.get("lastReading"))
                    if live >= self.devices:
                        return
                except (httpx.HTTPError, KeyError, ValueError, TypeError):
                    pass
                if time.monotonic() > deadline:
                    raise RuntimeError(
                        f"{self.devices} devices not live within {timeout_s:g} s:\n"
                        f"{self.log.read_text()[-3000:]}"
                    )
                time.sleep(1)

    def stop(self) -> None:
        self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(60)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        self.box.close()


def _metrics(cdp: Any) -> dict[str, float]:
    return {m["name"]: float(m["value"]) for m in cdp.send("Performance.getMetrics")["metrics"]}


def _measure(page: Any, cdp: Any, seconds: float, step: int) -> dict[str, Any]:
    """Frames for ``seconds`` (scrolling ``step`` px a frame when not 0), main-thread time."""
    before = _metrics(cdp)
    started = time.monotonic()
    raw = page.evaluate(FRAMES_JS, [seconds * 1000, step])
    wall = time.monotonic() - started
    after = _metrics(cdp)
    busy = {
        key: round(100 * (after.get(name, 0) - before.get(name, 0)) / wall, 1)
        for key, name in (
            ("main_thread_busy_pct", "TaskDuration"),
            ("script_pct", "ScriptDuration"),
            ("layout_pct", "LayoutDuration"),
            ("style_pct", "RecalcStyleDuration"),
        )
    }
    return {
        "scrolling": bool(step),
        "load_1min": round(os.getloadavg()[0], 2),  # the machine's, when the run ended
        "dom_nodes": raw["nodes"],
        **frame_figures(raw["frames"], seconds),
        "long_tasks": len(raw["longTasks"]),
        "long_task_ms_max": round(max(raw["longTasks"], default=0.0), 1),
        **busy,
    }


def measure_overview(
    browser: Any, system: _System, seconds: float, dist: Path, console: Console
) -> list[dict[str, Any]]:
    """Log in, open the Overview, let it settle, then count frames for ``seconds`` as it is,
    and (when the page is taller than the window) for ``seconds`` more while it scrolls."""
    from playwright.sync_api import expect

    context = browser.new_context(base_url=system.url, viewport=VIEWPORT, color_scheme="light")
    context.set_default_timeout(60_000)
    page = context.new_page()
    responses: list[Any] = []
    page.on("response", lambda r: responses.append(r) if "/assets/" in r.url else None)
    errors: list[str] = []
    page.on("pageerror", lambda e: errors.append(str(e)))
    try:
        page.goto("/login")
        page.get_by_label("User name").fill(BENCH_USER)
        page.get_by_label("Password").fill(BENCH_PASSWORD)
        page.get_by_role("button", name="Log in").click()
        expect(page.get_by_role("navigation", name="Main")).to_be_visible()
        cards = page.locator("article[aria-label^='device-']")
        expect(cards.first).to_be_visible()
        page.wait_for_load_state("networkidle")
        time.sleep(3)  # the live updates reach their steady rate
        fetched = {r.url.split("/", 3)[3]: r for r in responses}
        transferred = sum(r.request.sizes()["responseBodySize"] for r in fetched.values())
        encodings = sorted({r.headers.get("content-encoding", "none") for r in fetched.values()})
        cdp = context.new_cdp_session(page)
        cdp.send("Performance.enable")
        shown = cards.count()
        runs = [_measure(page, cdp, seconds, 0)]
        if page.evaluate("() => document.scrollingElement.scrollHeight > innerHeight * 1.5"):
            runs.append(_measure(page, cdp, seconds, 20))  # 1,200 px/s at 60 fps
    finally:
        context.close()
    sizes = {f["file"]: f for f in bundle_sizes(dist)["files"]}
    loaded = sorted({f for f in fetched if f in sizes})
    for run in runs:
        run.update(
            devices=system.devices,
            seconds=seconds,
            cards_shown=shown,
            page_errors=errors,
            overview_assets=loaded,
            overview_gzip_bytes=sum(sizes[f]["gzip_bytes"] for f in loaded)
            + sizes.get("index.html", {"gzip_bytes": 0})["gzip_bytes"],
            overview_assets_transferred_bytes=transferred,
            overview_assets_content_encoding=encodings,
        )
        console.print(
            f"  {system.devices:,} devices ({shown:,} cards"
            f"{', scrolling' if run['scrolling'] else ''}): fps min {run['fps_min']} "
            f"avg {run['fps_avg']}, frames p50/p99/max {run['frame_ms_p50']}/"
            f"{run['frame_ms_p99']}/{run['frame_ms_max']} ms, "
            f"{run['frames_over_33ms']} over 33 ms, main thread {run['main_thread_busy_pct']}%"
        )
    return runs


def _kib(n: int) -> str:
    return f"{n / 1024:,.1f}"


def run_bench(
    settings: Settings,
    *,
    seconds: float,
    large: int,
    chromium: str,
    output: str,
    markdown: str,
    console: Console,
) -> dict[str, Any]:
    from playwright.sync_api import sync_playwright

    if not Path(chromium).exists():
        raise RuntimeError(f"{chromium} not found: `scripts/dashboard.sh browser` installs it")
    dist = build(console)
    sizes = bundle_sizes(dist)
    console.print(
        f"  bundle: {_kib(sizes['total_raw_bytes'])} KiB raw, "
        f"{_kib(sizes['total_gzip_bytes'])} KiB gzip ({len(sizes['files'])} files)"
    )
    runs = []
    with tempfile.TemporaryDirectory(prefix="iotmon-bench-dashboard-") as tmp:
        served = Path(tmp) / "dist"
        shutil.copytree(dist, served)  # a rebuild meanwhile does not disturb the server
        with sync_playwright() as p:
            browser = p.chromium.launch(
                executable_path=chromium, args=["--no-sandbox"], headless=True
            )
            version = browser.version
            try:
                for n in (5, large):
                    work = Path(tmp) / f"up-{n}"
                    work.mkdir()
                    console.print(f"  {n:,} devices: starting iotmon up ...")
                    system = _System(settings, n, served, work)
                    try:
                        system.wait_ready()
                        runs.extend(measure_overview(browser, system, seconds, served, console))
                    finally:
                        system.stop()
            finally:
                browser.close()
    result = {
        "date": datetime.now(UTC).strftime("%Y-%m-%d"),
        "machine": machine(),
        "command": f"iotmon bench dashboard --seconds {seconds:g} --devices {large}",
        "chromium": version,
        "bundle": sizes,
        "runs": runs,
    }
    Path(output).parent.mkdir(parents=True, exist_ok=True)
    Path(output).write_bytes(orjson.dumps(result, option=orjson.OPT_INDENT_2) + b"\n")
    write_section(Path(markdown), START, END, _section(result))
    return result


def _section(result: dict[str, Any]) -> str:
    sizes = result["bundle"]
    files = [
        f"| `{f['file']}` | {_kib(f['raw_bytes'])} | {_kib(f['gzip_bytes'])} |"
        for f in sizes["files"]
    ]
    overview = result["runs"][0]
    runs = [
        f"| {r['devices']:,} | {r['cards_shown']:,} | {'scrolling' if r['scrolling'] else 'live'} "
        f"| {r['fps_min']} / {r['fps_avg']} | "
        f"{r['frame_ms_p50']} / {r['frame_ms_p99']} / {r['frame_ms_max']} | "
        f"{r['frames_over_33ms']} of {r['frames']:,} | {r['long_tasks']} | "
        f"{r['main_thread_busy_pct']}% (script {r['script_pct']}%, layout {r['layout_pct']}%) "
        f"| {r['load_1min']} |"
        for r in result["runs"]
    ]
    return "\n".join(
        [
            "## Dashboard: bundle size and frame rate",
            "",
            f"`{result['command']}` on {result['date']}, {result['machine']}, "
            f"Chromium {result['chromium']} (headless).",
            "",
            "Production build (`scripts/dashboard.sh build`, Vite), every file of "
            "`dashboard/dist`; gzip at level 6 (the usual server setting). The Overview "
            f"fetches {_kib(overview['overview_gzip_bytes'])} KiB gzip after logging in "
            f"(`index.html` and {', '.join(f'`{a}`' for a in overview['overview_assets'])}); "
            "the web role sent those assets as "
            f"{_kib(overview['overview_assets_transferred_bytes'])} KiB (content-encoding: "
            f"{', '.join(overview['overview_assets_content_encoding'])}).",
            "",
            "| file | raw KiB | gzip KiB |",
            "|---|---:|---:|",
            *files,
            f"| **total** | **{_kib(sizes['total_raw_bytes'])}** | "
            f"**{_kib(sizes['total_gzip_bytes'])}** |",
            "",
            f"Frame rate on the Overview, 1440x900, {overview['seconds']:g} s per run: "
            "`iotmon up` on the real services with the simulator at its default rates; a "
            "requestAnimationFrame counter in the page (fps per 1 s window), long tasks from "
            "a PerformanceObserver, the main thread's busy time from Chromium's "
            "`Performance.getMetrics`; *live*: the page as it is, updating; *scrolling*: "
            "also scrolled 20 px a frame, to the end and back (when it is taller than the "
            "window). Target: never below 30 fps.",
            "",
            "| devices | cards shown | page | fps min / avg | frame ms p50 / p99 / max "
            "| frames > 33 ms | long tasks | main thread busy | load (1 min) |",
            "|---:|---:|---|---|---|---:|---:|---|---:|",
            *runs,
            "",
            _verdict(result["runs"]),
            "Headless Chromium draws without a GPU here, and the system under test (every "
            "role, Kafka, PostgreSQL, Redis) shares the machine's cores with the browser: "
            "*load* is the 1-minute load average when the run ended.",
        ]
    )


def _verdict(runs: list[dict[str, Any]]) -> str:
    below = [
        f"{r['devices']:,} devices {'scrolling' if r['scrolling'] else 'live'} "
        f"(min {r['fps_min']} fps)"
        for r in runs
        if r["fps_min"] < 30
    ]
    if not below:
        return "Every run stayed at 30 fps or more in every 1 s window."
    return f"Below 30 fps in some 1 s window: {', '.join(below)}."
