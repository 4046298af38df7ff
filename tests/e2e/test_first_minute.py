"""The first minute of a fresh `iotmon up` (no history: the database as a new deployment has
it), in Debian's Chromium: a device page's Live chart holds the device's readings as soon as
it opens (from the API, then live, no reading lost or doubled at the seam), so do the
Overview's card sparklines, and the analytics
total equals the Overview's "Readings, last hour" (the current hour counted).

Screenshots of the Overview, a device page and Analytics in that first minute go to
$E2E_ARTIFACTS (default: <temp dir>/iotmon-e2e-first-minute), outside the repository.
"""

from __future__ import annotations

import os
import re
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

from playwright.sync_api import Page, expect

from tests.e2e.conftest import System
from tests.e2e.test_dashboard import DEVICES, LIVE_S, charts_drawn, log_in, settle, values_shown

HISTORY_HOURS = 0  # a fresh start (tests/e2e/conftest.py's system fixture)
ARTIFACTS = Path(
    os.environ.get("E2E_ARTIFACTS") or Path(tempfile.gettempdir()) / "iotmon-e2e-first-minute"
)
DEVICE = "device-003"  # the fastest: 1 s, 4 readings a second here
SEAM_S = 3  # the Live chart's seam fetch, this long after its history arrived


def shot(page: Page, name: str) -> None:
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    settle(page)
    page.screenshot(path=str(ARTIFACTS / f"{name}.png"), full_page=True)


def iso(t: float) -> str:
    return datetime.fromtimestamp(t, UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def stored(system: System, device: str, since: float, until: float) -> list[int]:
    """The device's readings in [since, until) as the API has them (ms since the epoch)."""
    h = system.api(
        f"/api/devices/{device}/history", **{"from": iso(since), "to": iso(until), "limit": 10_000}
    )
    assert not h["downsampled"]
    return [round(datetime.fromisoformat(p["timestamp"]).timestamp() * 1000) for p in h["points"]]


def chart_times(page: Page) -> list[int]:
    """The Live chart's points as Plotly draws them (ms since the epoch)."""
    return list(
        page.evaluate(
            """() => {
              const gd = document.querySelector('[data-testid="live-chart"] .js-plotly-plot');
              return gd && gd.data && gd.data[0] ? gd.data[0].x.map((d) => +new Date(d)) : [];
            }"""
        )
    )


def readings(text: str) -> int:
    return int(re.sub(r"[^\d]", "", text))


def test_live_chart_has_points_at_once(page: Page, system: System) -> None:
    """A device page opened (a new page load: no live state, no replay) draws the readings
    stored before it opened, which only the API can have given it; a few seconds on, every
    stored reading up to then is on the chart once, in time order (no gap, no double at the
    seam between the history and the live points)."""
    start = time.time() - 900
    deadline = time.monotonic() + LIVE_S
    # More than a handful, counted as `before` counts them below (up to two seconds ago), so
    # that the count cannot fall short when the log-in is quick.
    while len(stored(system, DEVICE, start, time.time() - 2)) < 20:
        assert time.monotonic() < deadline, system.tail()
        time.sleep(0.5)
    log_in(page, "operator")
    values_shown(page)
    shot(page, "overview")
    opened = time.time()
    before = stored(system, DEVICE, start, opened - 2)  # stored for sure by now
    page.goto(f"/devices/{DEVICE}")
    page.wait_for_function(
        "(n) => Number(document.querySelector('[data-testid=\"live-chart\"]')"
        "?.getAttribute('data-points')) >= n",
        arg=len(before),
    )
    drawn = chart_times(page)
    assert len(before) >= 20
    assert set(before) <= set(drawn), f"missing {sorted(set(before) - set(drawn))[:10]}"
    assert min(drawn) < opened * 1000 - 2000  # from before the page opened: not live

    page.wait_for_timeout((SEAM_S + 2) * 1000)  # the seam fetch has been and gone
    drawn = chart_times(page)
    assert drawn == sorted(set(drawn)), "the Live chart has a reading twice or out of order"
    settled = stored(system, DEVICE, min(drawn) / 1000, opened + 1)
    assert set(settled) <= set(drawn), f"gap: {sorted(set(settled) - set(drawn))[:10]}"
    expect(page.get_by_text(re.compile(r"last \d+ of 600 points"))).to_be_visible()
    shot(page, "device")

    page.get_by_role("navigation", name="Main").get_by_role("link", name="Analytics").click()
    charts_drawn(page)
    expect(page.locator(".trends-table tbody tr")).to_have_count(len(DEVICES))
    shot(page, "analytics")
    assert not page.problems, page.problems  # type: ignore[attr-defined]


# How many points a device's card draws in its sparkline (0: no line yet).
SPARK_POINTS_JS = """(id) => {
  const line = document.querySelector(`article[aria-label="${id}"] .sparkline polyline`);
  return line ? line.getAttribute('points').trim().split(/\\s+/).length : 0;
}"""


def test_card_sparklines_have_points_at_once(page: Page, system: System) -> None:
    """The Overview after a full page load, its Socket.IO connection refused (so no live
    point can reach it): every card's sparkline is drawn all the same, with the device's
    readings stored before the page opened, which only the API can have given it."""
    deadline = time.monotonic() + LIVE_S
    while len(stored(system, DEVICE, time.time() - 900, time.time() - 2)) < 20:
        assert time.monotonic() < deadline, system.tail()
        time.sleep(0.5)
    live = re.compile(r"/socket\.io/")
    page.route_web_socket(live, lambda ws: ws.close())  # the transport the client tries first
    page.route(live, lambda route: route.abort())  # long polling, its fallback
    opened = time.time()
    # Stored for sure before the page opened; a card asks for about its last 90 readings.
    expected = {d: min(60, len(stored(system, d, opened - 60, opened - 2))) for d in DEVICES}
    assert expected[DEVICE] >= 10, expected
    log_in(page, "operator")  # a full page load: no live state in the browser
    values_shown(page)
    for device in DEVICES:
        page.wait_for_function(
            f"([id, n]) => ({SPARK_POINTS_JS})(id) >= n", arg=[device, max(2, expected[device])]
        )
        assert page.evaluate(SPARK_POINTS_JS, device) >= expected[device]
    shot(page, "overview-sparklines")


def test_analytics_total_equals_the_key_figure(page: Page, system: System) -> None:
    """The devices stop (an offline scenario each), the pipeline drains: the Overview's
    "Readings, last hour" and the sum of the analytics' readings per device (this hour and
    the one before: everything since the start) are the same number, in the API and on the
    pages."""
    for device in DEVICES:
        system.scenario(device, "offline", 600)
    deadline = time.monotonic() + LIVE_S
    while True:  # the figures move until the last readings are processed and stored
        figure = system.api("/api/metrics/dashboard")["dataPointsLastHour"]
        summary = system.api("/api/analytics/summary", hours=2)
        total = sum(d["readings"] for d in summary["devices"])
        if figure == total and figure > 0:
            break
        assert time.monotonic() < deadline, f"key figure {figure}, analytics total {total}"
        time.sleep(1)
    assert summary["heatmap"]["devices"] == DEVICES

    log_in(page, "operator")
    shown = page.get_by_test_id("figure-readings")
    expect(shown).to_have_text(f"{figure:,}", timeout=LIVE_S * 1000)
    page.goto("/analytics")
    rows = page.locator(".trends-table tbody tr")
    expect(rows).to_have_count(len(DEVICES), timeout=LIVE_S * 1000)
    column = rows.locator("td.num:nth-child(6)")  # Readings (th, type, avg, min, max, readings)
    expect(column).to_have_count(len(DEVICES))
    assert sum(readings(t) for t in column.all_inner_texts()) == figure
    charts_drawn(page)
    shot(page, "analytics-agrees")
    assert not page.problems, page.problems  # type: ignore[attr-defined]
