"""Notifications: email over SMTP (aiosmtplib) and webhooks (JSON POST with retry and
backoff), on trigger, escalation and resolution, rate-limited per device and channel.

A resolution is always sent for an alert whose trigger was sent: whoever was woken up hears
that it is over. Silenced alerts are never sent.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from email.message import EmailMessage
from typing import Any

import aiosmtplib
import httpx
from prometheus_client import Counter

from iotmon import logging as log
from iotmon.alerts.models import Alert
from iotmon.config import mask_url

logger = log.get(__name__)

SENT = Counter("iotmon_notifications_total", "Notifications", ["channel", "event", "outcome"])


@dataclass(frozen=True)
class NotifyConfig:
    webhook_urls: tuple[str, ...] = ()
    smtp_host: str | None = None
    smtp_port: int = 25
    smtp_from: str = "iotmon@localhost"
    smtp_to: tuple[str, ...] = ()
    smtp_username: str | None = None
    smtp_password: str | None = None
    smtp_starttls: bool = False
    rate_limit_s: float = 60.0
    webhook_attempts: int = 4
    webhook_backoff_s: float = 0.5


@dataclass
class Notifier:
    config: NotifyConfig
    clock: Callable[[], float] = time.monotonic
    _last: dict[tuple[str, str], float] = field(default_factory=dict)
    _notified: set[int] = field(default_factory=set)  # alerts whose trigger went out
    _client: httpx.AsyncClient | None = None
    # The web role resolves alerts whose trigger another process notified: it announces every
    # resolution of an alert that was not silenced.
    resolutions_always: bool = False

    @property
    def channels(self) -> list[str]:
        out = []
        if self.config.webhook_urls:
            out.append("webhook")
        if self.config.smtp_host and self.config.smtp_to:
            out.append("email")
        return out

    async def notify(self, event: str, alert: Alert) -> list[str]:
        """Send ``event`` (alert-triggered|escalated|updated|resolved|flapping|settled) on
        every channel whose rate limit allows; return the channels used."""
        if alert.silenced:
            return []
        used = []
        for channel in self.channels:
            if not self._allowed(channel, event, alert):
                SENT.labels(channel, event, "rate_limited").inc()
                continue
            try:
                if channel == "webhook":
                    await self._webhooks(event, alert)
                else:
                    await self._email(event, alert)
                SENT.labels(channel, event, "sent").inc()
                used.append(channel)
            except Exception as exc:
                SENT.labels(channel, event, "failed").inc()
                logger.error(
                    "notification failed",
                    channel=channel,
                    notify_event=event,
                    alert=alert.id,
                    error=self._scrub(str(exc)),
                )
        if used and event != "alert-resolved":
            self._notified.add(alert.id)
        if event == "alert-resolved":
            self._notified.discard(alert.id)
        return used

    def _allowed(self, channel: str, event: str, alert: Alert) -> bool:
        if event == "alert-resolved":
            return self.resolutions_always or alert.id in self._notified
        if event == "alert-updated":  # a rise to critical: once per alert at most, never held
            return True
        if event in ("alert-flapping", "alert-settled"):  # once per flapping episode each
            return True
        key = (alert.device_id, channel)
        now = self.clock()
        last = self._last.get(key)
        if last is not None and now - last < self.config.rate_limit_s:
            return False
        self._last[key] = now
        return True

    def _scrub(self, text: str) -> str:
        """``text`` without any webhook URL in it (a Slack-style hook's URL is its secret)."""
        for url in self.config.webhook_urls:
            text = text.replace(url, mask_url(url))
        return text

    def payload(self, event: str, alert: Alert) -> dict[str, Any]:
        return {"event": event, "alert": alert.as_event()}

    async def _webhooks(self, event: str, alert: Alert) -> None:
        if self._client is None:
            self._client = httpx.AsyncClient(timeout=5.0)
        body = self.payload(event, alert)
        for url in self.config.webhook_urls:
            delay = self.config.webhook_backoff_s
            for attempt in range(1, self.config.webhook_attempts + 1):
                try:
                    r = await self._client.post(url, json=body)
                    if r.status_code < 500 and r.status_code != 429:
                        r.raise_for_status()
                        break
                    error = f"HTTP {r.status_code}"
                except httpx.HTTPStatusError as exc:  # a 4xx will not get better by retrying
                    raise RuntimeError(
                        f"webhook {mask_url(url)}: HTTP {exc.response.status_code}"
                    ) from None
                except httpx.HTTPError as exc:
                    error = self._scrub(str(exc) or type(exc).__name__)
                if attempt == self.config.webhook_attempts:
                    raise RuntimeError(f"webhook {mask_url(url)}: {error} after {attempt} attempts")
                await asyncio.sleep(delay)
                delay *= 2

    async def _email(self, event: str, alert: Alert) -> None:
        c = self.config
        assert c.smtp_host is not None
        msg = EmailMessage()
        what = {
            "alert-updated": "severity raised",
            "alert-flapping": "flapping (notifications held)",
            "alert-settled": f"settled ({alert.status})",
        }.get(event, event.removeprefix("alert-"))
        msg["Subject"] = (
            f"[iotmon] {what.upper()}: {alert.severity} {alert.alert_type} on {alert.device_id}"
        )
        msg["From"] = c.smtp_from
        msg["To"] = ", ".join(c.smtp_to)
        ev = alert.as_event()
        msg.set_content(
            "\n".join(
                [
                    alert.message,
                    "",
                    f"alert     #{alert.id} ({alert.status})",
                    f"device    {alert.device_id}",
                    f"type      {alert.alert_type}",
                    f"severity  {alert.severity}",
                    f"value     {alert.value} (threshold {alert.threshold})",
                    f"triggered {ev['triggeredAt']}",
                    f"repeats   {alert.count}",
                ]
            )
        )
        await aiosmtplib.send(
            msg,
            hostname=c.smtp_host,
            port=c.smtp_port,
            username=c.smtp_username,
            password=c.smtp_password,
            start_tls=c.smtp_starttls,
            timeout=10,
        )

    async def close(self) -> None:
        if self._client is not None:
            await self._client.aclose()
