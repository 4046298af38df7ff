"""Every router of the REST API, in the order the app matches them."""

from __future__ import annotations

from fastapi import APIRouter

from iotmon.alerts import routes as alerts
from iotmon.devices import routes as devices
from iotmon.mqtt import routes as mqtt
from iotmon.profiles import routes as profiles
from iotmon.readings import routes as readings
from iotmon.users import routes as users
from iotmon.web import analytics, metrics, system

ROUTERS: list[APIRouter] = [
    users.auth_router,
    system.router,
    users.router,
    devices.router,
    readings.router,
    alerts.router,
    metrics.router,
    analytics.router,
    profiles.router,
    profiles.device_router,
    mqtt.router,
]
