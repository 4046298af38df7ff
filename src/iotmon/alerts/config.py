"""The alert engine's and the notifier's configuration from the settings, for every process
that runs them (the alerts role, and the web role for operators' actions)."""

from __future__ import annotations

from iotmon.alerts import rules
from iotmon.alerts.notify import NotifyConfig
from iotmon.config import Settings, secret


def notify_config(s: Settings) -> NotifyConfig:
    return NotifyConfig(
        webhook_urls=tuple(s.notify_webhook_urls),
        smtp_host=s.smtp_host,
        smtp_port=s.smtp_port,
        smtp_from=s.smtp_from,
        smtp_to=tuple(s.smtp_to),
        smtp_username=s.smtp_username,
        smtp_password=secret(s.smtp_password),
        smtp_starttls=s.smtp_starttls,
        rate_limit_s=s.notify_rate_limit_s,
    )


def rule_config(s: Settings) -> rules.RuleConfig:
    return rules.RuleConfig(
        min_duration_s=s.alert_min_duration_s,
        min_readings=s.alert_min_readings,
        offline_timeout_s=s.alert_offline_timeout_s,
        escalate_after_s=s.alert_escalate_after_s,
        flap_changes=s.alert_flap_changes,
        flap_window_s=s.alert_flap_window_s,
        flap_quiet_s=s.alert_flap_quiet_s,
    )
