"""Settings: built once from the environment (prefix ``IOTMON_``), frozen, passed in.

Nothing here connects to anything. With no configuration at all the settings describe the
embedded mode: in-process bus, embedded PostgreSQL and Redis under ``data_dir``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

from pydantic import Field, SecretStr
from pydantic_settings import BaseSettings, SettingsConfigDict


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="IOTMON_", frozen=True, extra="ignore")

    # --- where things are (unset = embedded) ---
    kafka_bootstrap: str | None = Field(
        default=None, description="Kafka bootstrap servers; unset = in-process bus"
    )
    database_url: SecretStr | None = Field(
        default=None, description="PostgreSQL URL; unset = embedded PostgreSQL under data_dir"
    )
    redis_url: SecretStr | None = Field(
        default=None, description="Redis URL; unset = embedded Redis under data_dir"
    )
    data_dir: Path = Field(default=Path("var"), description="embedded data and state")

    # --- topics and groups (a prefix isolates test runs and benchmarks) ---
    topic_prefix: str = ""
    ingestion_group: str = "iotmon-ingestion"
    processing_group: str = "iotmon-processing"
    kafka_session_timeout_ms: int = Field(default=10_000, ge=1000)

    # --- HTTP (/health, /metrics) ---
    http_host: str = "127.0.0.1"
    http_port: int | None = Field(default=None, description="unset = the role's default port")
    max_body_bytes: int = Field(
        default=1 << 20, ge=1024, description="largest request body any role's HTTP accepts"
    )
    max_header_bytes: int = Field(
        default=64 << 10, ge=4096, description="largest request line and headers, together"
    )
    trusted_proxies: str = Field(
        default="",
        description="addresses/networks (comma-separated) whose X-Forwarded-For is believed",
    )

    # --- simulator ---
    simulator_devices: int = Field(default=5, ge=1, le=1_000_000)
    simulator_rate: float = Field(default=1.0, gt=0, description="multiplier of each interval")
    simulator_anomaly_rate: float = Field(default=0.05, ge=0, le=1)
    simulator_seed: int | None = None
    simulator_transport: Literal["kafka", "mqtt", "both"] = Field(
        default="kafka",
        description="kafka: readings straight to sensors-data; mqtt: devices publish through"
        " the broker like real ones (F2 controllers and the spec's devices); both: the Kafka"
        " fleet plus the MQTT devices (iotmon up does this whenever there is a broker)",
    )
    simulator_f2_controllers: int = Field(
        default=2, ge=0, le=1000, description="seed 002's F2 controllers over MQTT"
    )
    simulator_control: bool = Field(
        default=False,
        description="POST /simulator/scenarios without a token (only where no database is"
        " configured to check one)",
    )

    # --- ingestion ---
    ingest_batch_size: int = Field(default=20_000, ge=1)
    ingest_batch_wait_ms: int = Field(default=200, ge=1)
    max_future_skew_s: float = 300.0

    # --- processing ---
    anomaly_z: float = Field(default=4.0, gt=0, description="|z| that makes a data_anomaly")
    trend_horizon_s: float = Field(
        default=900.0, gt=0, description="trend_warning when the line crosses within"
    )

    stats_interval_s: float = Field(
        default=5.0, ge=0, description="device statistics written at most this often"
    )
    live_min_interval_s: float = Field(
        default=0.1, ge=0, description="sensor-data events per device at most"
    )
    # --- web role (REST API, Socket.IO) ---
    jwt_secret: SecretStr | None = Field(
        default=None, description="token signing key; unset = one kept in PostgreSQL"
    )
    token_ttl_s: int = Field(default=3600, ge=60, description="lifetime of an access token")
    cors_origins: list[str] = Field(
        default_factory=lambda: ["*"], description="origins allowed to call the API"
    )
    dashboard_dir: Path | None = Field(
        default=Path("dashboard/dist"), description="the built dashboard the web role serves"
    )
    rate_limit_per_minute: int = Field(
        default=100, ge=0, description="API requests per client per minute (0 = no limit)"
    )
    live_replay_size: int = Field(
        default=100, ge=0, description="events kept per Socket.IO room for clients that reconnect"
    )
    live_replay_ttl_s: int = Field(
        default=3600, ge=1, description="a room's replay buffer is dropped after this much quiet"
    )
    live_watch_grace_s: float = Field(
        default=300,
        ge=0,
        description="a device room stays published this long after its last client left",
    )
    live_max_payload_bytes: int = Field(
        default=64 << 10, ge=1024, description="largest Socket.IO message a client may send"
    )
    live_connect_timeout_s: float = Field(
        default=5.0, ge=0, description="a Socket.IO session without CONNECT is closed (0 = never)"
    )
    live_replays_per_minute: int = Field(
        default=30, ge=1, description="replays (subscribe with lastEventId) per Socket.IO client"
    )

    # --- alerts ---
    alerts_group: str = "iotmon-alerts"
    alert_offline_timeout_s: float = Field(default=30.0, gt=0)
    alert_escalate_after_s: float = Field(default=300.0, gt=0)
    alert_min_duration_s: float = Field(default=0.0, ge=0, description="breach must hold")
    alert_min_readings: int = Field(
        default=2, ge=1, description="readings a threshold breach must last (1: at once)"
    )
    # Flap detection (README, alerts: why these defaults).
    alert_flap_changes: int = Field(
        default=4, ge=0, description="flapping past this many opens/resolves (0: off)"
    )
    alert_flap_window_s: float = Field(default=600.0, gt=0, description="... in this window")
    alert_flap_quiet_s: float = Field(default=300.0, gt=0, description="settled after this")
    notify_webhook_urls: list[str] = Field(default_factory=list)
    notify_rate_limit_s: float = Field(default=60.0, ge=0)
    smtp_host: str | None = None
    smtp_port: int = 25
    smtp_from: str = "iotmon@localhost"
    smtp_to: list[str] = Field(default_factory=list)
    smtp_username: str | None = None
    smtp_password: SecretStr | None = None
    smtp_starttls: bool = False

    # --- MQTT devices (issue 12): unset mqtt_url = no bridge, no decoder ---
    mqtt_url: SecretStr | None = Field(
        default=None, description="mqtt://host:port of the broker; unset = no MQTT roles"
    )
    mqtt_admin_url: SecretStr | None = Field(
        default=None,
        description="mqtt://user:password@host:port of the broker's dynamic security admin:"
        " device credentials are provisioned through it; unset = no provisioning",
    )
    mqtt_share_group: str = Field(
        default="iotmon-bridge", description="bridges split the load in $share/<this>/..."
    )
    mqtt_topics: list[str] = Field(
        default_factory=lambda: ["cmnd/#", "devices/#"],
        description="topic filters the bridges subscribe to (under mqtt_topic_root)",
    )
    mqtt_topic_root: str = Field(default="", description="a prefix of every device topic")
    mqtt_client_id: str | None = Field(
        default=None,
        description="the bridge's MQTT client id (its session survives a crash); unset ="
        " iotmon-bridge-<hostname>",
    )
    mqtt_decoder_group: str = "iotmon-mqtt-decoder"
    mqtt_decoder_id: str | None = Field(
        default=None,
        description="the decoder's Kafka transactional id suffix: stable across restarts of"
        " one instance, distinct between instances; unset = the hostname",
    )
    mqtt_dedup_window_s: float = Field(default=600.0, gt=0, description="redeliveries caught")
    mqtt_dedup_max: int = Field(
        default=100_000, ge=1, description="keys kept per partition of mqtt-raw"
    )
    mqtt_profile_refresh_s: float = Field(default=5.0, gt=0)
    mqtt_protocol: Literal["5", "3.1.1"] = Field(
        default="5",
        description="5: the bridges share a $share subscription; 3.1.1 (a broker without MQTT"
        " 5, like the embedded one): one bridge, a plain subscription, a persistent session",
    )
    mqtt_embedded_port: int = Field(
        default=1883,
        ge=0,
        le=65535,
        description="iotmon up without IOTMON_MQTT_URL runs a broker in the process on"
        " 127.0.0.1:<this> (0 = none)",
    )

    # --- retention (days) and partitions ---
    retention_readings_days: int = Field(default=90, ge=1)
    retention_stats_days: int = Field(default=365, ge=1)
    retention_alerts_days: int = Field(default=180, ge=1)
    retention_events_days: int = Field(default=30, ge=1)
    partitions_ahead_days: int = Field(default=3, ge=1)

    log_level: str = "INFO"
    log_json: bool | None = Field(default=None, description="unset = JSON unless on a terminal")
    log_format: Literal["auto", "json", "console"] = Field(
        default="auto", description="auto: readable on a terminal, JSON otherwise"
    )

    @property
    def embedded(self) -> bool:
        return self.kafka_bootstrap is None

    def topic(self, name: str) -> str:
        return f"{self.topic_prefix}{name}"

    def masked(self) -> dict[str, Any]:
        """The effective configuration with secrets masked (for ``iotmon config show``)."""
        out: dict[str, Any] = {}
        for name, value in self.model_dump().items():
            if isinstance(value, SecretStr):
                out[name] = "**********"
            elif name == "notify_webhook_urls":  # a Slack-style hook's URL is its secret
                out[name] = [mask_url(u) for u in value]
            elif isinstance(value, Path):
                out[name] = str(value)
            else:
                out[name] = value
        return out


def mask_url(url: str) -> str:
    """``https://hooks.example.com/services/T0/B0/xyz`` -> ``https://hooks.example.com/***``:
    enough to tell which endpoint, nothing of its path, query or credentials."""
    from urllib.parse import urlsplit

    try:
        parts = urlsplit(url)
        host = parts.hostname or ""
        port = f":{parts.port}" if parts.port else ""
    except ValueError:
        return "***"
    if not parts.scheme or not host:
        return "***"
    return f"{parts.scheme}://{host}{port}/***"


def secret(value: SecretStr | None) -> str | None:
    return value.get_secret_value() if value is not None else None
