"""The dashboard end to end, in Debian's Chromium (headless) through Playwright, against
`iotmon up` on the real services (tests/e2e/conftest.py): log in, five live device cards,
a device's live chart, an alert from a simulator scenario as a toast, acknowledging it as an
operator, a viewer without the buttons to do so, and the analytics page.

Every view is saved at desktop (1440x900) and phone (390x844) sizes, and at desktop size in
the dark theme, under tests/e2e/screenshots/ (overwritten each run). Every test also fails on
an uncaught error in the page and on a view wider than its window (it would scroll sideways;
the message names the elements that make it so).
"""

from __future__ import annotations

import re
from collections.abc import Callable
from pathlib import Path

from playwright.sync_api import Locator, Page, expect

from tests.e2e.conftest import PASSWORD, PHONE, System

SCREENSHOTS = Path(__file__).resolve().parent / "screenshots"
DEVICES = [f"device-00{n}" for n in range(1, 6)]
LIVE_S = 45  # deadline for anything the live pipeline delivers


def log_in(page: Page, user: str, password: str = PASSWORD) -> None:
    page.goto("/login")
    page.get_by_label("User name").fill(user)
    page.get_by_label("Password").fill(password)
    page.get_by_role("button", name="Log in").click()
    expect(page.get_by_role("navigation", name="Main")).to_be_visible()


def settle(page: Page) -> None:
    """Wait until the fonts are in and every Plotly chart is drawn."""
    page.wait_for_function(
        """() => document.fonts.status === 'loaded' &&
          [...document.querySelectorAll('.js-plotly-plot')].every((el) => {
            const svg = el.querySelector('svg.main-svg');
            return svg !== null && svg.getBoundingClientRect().width > 0;
          })""",
        timeout=15_000,
    )
    page.evaluate("() => new Promise((r) => requestAnimationFrame(() => requestAnimationFrame(r)))")


# When the page is wider than the window: what makes it so. Hiding an element that makes the
# page wider makes it narrower; descend from <body> along such elements to the deepest one
# (hiding none of its children alone helps: it is too wide itself, e.g. a row that does not
# wrap; tables and charts count as one), note it, hide it and look again (the widest three).
# Synchronous: the page never renders the hidden states.
OVERFLOW_JS = """() => {
  const W = window.innerWidth;
  const width = () => document.documentElement.scrollWidth;
  const page = width();
  const name = (el) => {
    let s = el.tagName.toLowerCase();
    if (typeof el.className === 'string' && el.className.trim())
      s += '.' + el.className.trim().split(/\\s+/).join('.');
    for (const a of ['data-testid', 'aria-label'])
      if (el.getAttribute(a)) s += `[${a}="${el.getAttribute(a)}"]`;
    return s;
  };
  const hide = (el) => {
    const css = el.style.cssText;
    el.style.setProperty('display', 'none', 'important');
    return () => { el.style.cssText = css; };
  };
  const culprits = [], restore = [];
  for (let round = 0; round < 3 && width() > W; round++) {
    let el = document.body;
    for (;;) {
      const now = width();
      let next = null, best = now;
      if (!el.matches('table, svg, .js-plotly-plot')) for (const c of el.children) {
        const undo = hide(c); const w = width(); undo();
        if (w < best) { best = w; next = c; }
      }
      if (next === null) break;
      el = next;
    }
    if (el === document.body) break;
    const path = [];
    for (let p = el; p && p !== document.body && path.length < 3; p = p.parentElement)
      path.unshift(name(p));
    culprits.push(`${path.join(' > ')} (${Math.round(el.getBoundingClientRect().width)} px)`);
    restore.push(hide(el));
  }
  restore.reverse().forEach((undo) => undo());
  return { width: page, culprits };
}"""


def overflow(page: Page, view: str) -> str | None:
    """What is wrong when the page is wider than its window (it scrolls sideways)."""
    found = page.evaluate(OVERFLOW_JS)
    size = page.viewport_size
    assert size is not None
    if found["width"] <= size["width"]:
        return None
    return (
        f"{view}: the page is {found['width']} px wide in a {size['width']} px window; "
        f"too wide: {'; '.join(found['culprits']) or '?'}"
    )


def screenshots(page: Page, view: str, ready: Callable[[Page], None]) -> None:
    """Save the view as it is at desktop size, in the dark theme too, and as a phone shows it
    when it opens the same address (a new tab at 390x844 in the same session; ``ready``
    waits for its content). Overflow is noted for `check_page`."""
    SCREENSHOTS.mkdir(exist_ok=True)
    problems: list[str] = page.problems  # type: ignore[attr-defined]
    for scheme, suffix in (("light", ""), ("dark", "-dark")):
        page.emulate_media(color_scheme=scheme)  # type: ignore[arg-type]
        page.wait_for_function(f"() => document.documentElement.dataset.theme === '{scheme}'")
        settle(page)
        page.screenshot(path=str(SCREENSHOTS / f"{view}-desktop{suffix}.png"), full_page=True)
    problems.extend(p for p in [overflow(page, view)] if p)
    page.emulate_media(color_scheme="light")
    phone = page.context.new_page()
    phone.on("pageerror", lambda e: problems.append(f"{view} (phone): uncaught error: {e}"))
    try:
        phone.set_viewport_size(PHONE)
        phone.goto(page.url)
        ready(phone)
        settle(phone)
        phone.screenshot(path=str(SCREENSHOTS / f"{view}-phone.png"), full_page=True)
        problems.extend(p for p in [overflow(phone, f"{view} (phone)")] if p)
    finally:
        phone.close()


def on_phone(page: Page, check: Callable[[Page], None]) -> None:
    """``check`` the page's address in a new tab of the same session at phone size."""
    phone = page.context.new_page()
    try:
        phone.set_viewport_size(PHONE)
        phone.goto(page.url)
        check(phone)
    finally:
        phone.close()


def button_in_view(phone: Page, alert_id: int, name: str) -> None:
    """The alert's button is on screen without scrolling sideways (each row a card)."""
    button = phone.locator(f'tr[data-alert-id="{alert_id}"]').get_by_role("button", name=name)
    expect(button).to_be_visible()
    box = button.bounding_box()
    assert box is not None
    assert box["x"] >= 0
    assert box["x"] + box["width"] <= PHONE["width"], f"{name} is off screen on a phone: {box}"


def check_page(page: Page) -> None:
    """No uncaught error in the page (or its phone tab), no view wider than its window."""
    problems: list[str] = page.problems  # type: ignore[attr-defined]
    assert not problems, "\n".join(problems)


def values_shown(page: Page) -> dict[str, Locator]:
    """The five cards' values, once each shows a number."""
    values = {}
    for device in DEVICES:
        value = page.locator(f'article[aria-label="{device}"] [data-testid="device-value"]')
        expect(value).to_have_text(re.compile(r"\d"), timeout=LIVE_S * 1000)
        values[device] = value
    return values


def chart_points(page: Page, at_least: int) -> None:
    """Until the live chart holds at least that many points."""
    page.wait_for_function(
        """(n) => {
          const el = document.querySelector('[data-testid="live-chart"]');
          return el !== null && Number(el.getAttribute('data-points')) >= n;
        }""",
        arg=at_least,
        timeout=LIVE_S * 1000,
    )


def row_shown(alert_id: int) -> Callable[[Page], None]:
    def ready(page: Page) -> None:
        row = page.locator(f'tr[data-alert-id="{alert_id}"]')
        expect(row.locator('[data-testid="alert-status"]')).to_be_visible(timeout=LIVE_S * 1000)

    return ready


def charts_drawn(page: Page) -> None:
    """At least one Plotly chart with a trace drawn in it (not only axes)."""
    expect(page.locator(".js-plotly-plot").first).to_be_visible(timeout=LIVE_S * 1000)
    expect(page.locator(".js-plotly-plot .trace").first).to_be_attached(timeout=LIVE_S * 1000)


def test_login(page: Page, system: System) -> None:
    """No session: the login form. A wrong password is refused with a message; the right one
    opens the overview."""
    page.goto("/")
    expect(page).to_have_url(re.compile(r"/login$"))
    login_button = page.get_by_role("button", name="Log in")
    expect(login_button).to_be_visible()
    screenshots(
        page, "login", lambda p: expect(p.get_by_role("button", name="Log in")).to_be_visible()
    )
    page.get_by_label("User name").fill("operator")
    page.get_by_label("Password").fill("not-the-password")
    login_button.click()
    expect(page.get_by_role("form", name="Log in").get_by_role("alert")).to_be_visible()
    expect(page).to_have_url(re.compile(r"/login$"))
    page.get_by_label("Password").fill(PASSWORD)
    login_button.click()
    expect(page.get_by_role("navigation", name="Main")).to_be_visible()
    expect(page).to_have_url(re.compile(r"/$"))
    expect(page.get_by_text("operator (operator)")).to_be_visible()
    check_page(page)


def test_overview_five_live_cards(page: Page, system: System) -> None:
    """Five device cards, each with a value, and every value changes while we watch."""
    log_in(page, "operator")
    values = values_shown(page)
    expect(page.locator("article[aria-label^='device-']")).to_have_count(5)
    first = {device: value.inner_text() for device, value in values.items()}
    for device, value in values.items():
        expect(value, f"{device}'s value did not change").not_to_have_text(
            first[device], timeout=LIVE_S * 1000
        )
    screenshots(page, "overview", values_shown)
    check_page(page)


def test_device_live_chart_grows(page: Page, system: System) -> None:
    """From the overview to a device: its live chart gains points while we watch."""
    log_in(page, "operator")
    page.locator('article[aria-label="device-001"] a[href$="/devices/device-001"]').first.click()
    expect(page).to_have_url(re.compile(r"/devices/device-001(\?.*)?$"))
    chart = page.locator('[data-testid="live-chart"]')
    expect(chart).to_have_attribute("data-last", re.compile(r"^\d+$"), timeout=LIVE_S * 1000)
    # It opens with the recent history (up to its 600 points), so "grows" is: its latest
    # point moves on, live, while the page stays open.
    last = int(chart.get_attribute("data-last") or 0)
    page.wait_for_function(
        """(t) => {
          const el = document.querySelector('[data-testid="live-chart"]');
          return el !== null && Number(el.getAttribute('data-last')) > t;
        }""",
        arg=last,
        timeout=LIVE_S * 1000,
    )
    screenshots(page, "device", lambda p: chart_points(p, 3))
    check_page(page)


def test_threshold_alert_toast_and_acknowledge(page: Page, system: System) -> None:
    """A `high` scenario on device-001 shows a toast with the alert's message; on /alerts the
    operator acknowledges it and its status becomes acknowledged (in the page and the API)."""
    log_in(page, "operator")
    expect(page.get_by_role("status").filter(has_text="Live")).to_be_visible()
    system.scenario("device-001", "high", 120)
    toaster = page.locator("[data-rht-toaster]")
    expect(toaster).to_contain_text(
        re.compile(r"device-001.*above the alert threshold"), timeout=LIVE_S * 1000
    )
    alert = system.wait_alert("device-001", "threshold_exceeded")
    page.get_by_role("navigation", name="Main").get_by_role("link", name="Alerts").click()
    expect(page).to_have_url(re.compile(r"/alerts(\?.*)?$"))
    row = page.locator(f'tr[data-alert-id="{alert["id"]}"]')
    status = row.locator('[data-testid="alert-status"]')
    expect(status).to_have_text(re.compile("triggered", re.IGNORECASE))
    screenshots(page, "alerts", row_shown(alert["id"]))
    on_phone(page, lambda phone: button_in_view(phone, alert["id"], "Acknowledge"))
    row.get_by_role("button", name="Acknowledge").click()
    expect(status).to_have_text(re.compile("acknowledged", re.IGNORECASE))
    expect(row.get_by_role("button", name="Acknowledge")).to_have_count(0)
    after = system.api(f"/api/alerts/{alert['id']}")
    assert after["status"] == "acknowledged"
    assert after["acknowledgedBy"] == "operator"
    screenshots(page, "alerts-acknowledged", row_shown(alert["id"]))
    check_page(page)


def test_viewer_has_no_alert_actions(page: Page, system: System) -> None:
    """A viewer sees the open alerts but no button to acknowledge or resolve any."""
    system.scenario("device-005", "low", 120)
    alert = system.wait_alert("device-005", "threshold_below")
    log_in(page, "viewer")
    page.goto("/alerts")
    row_shown(alert["id"])(page)
    expect(page.get_by_role("button", name="Acknowledge")).to_have_count(0)
    expect(page.get_by_role("button", name="Resolve")).to_have_count(0)
    screenshots(page, "alerts-viewer", row_shown(alert["id"]))
    check_page(page)


def test_analytics_draws_charts(page: Page, system: System) -> None:
    """The analytics page draws its charts (Plotly, with data) from the running system and
    its four hours of history."""
    log_in(page, "operator")
    page.get_by_role("navigation", name="Main").get_by_role("link", name="Analytics").click()
    expect(page).to_have_url(re.compile(r"/analytics(\?.*)?$"))
    charts_drawn(page)
    screenshots(page, "analytics", charts_drawn)
    check_page(page)
