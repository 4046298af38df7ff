"""Device profiles: the seeded ones (migration), the admin API with its 422s, assignment."""

# ruff: noqa: F811 (the api fixture of test_api is imported, then used as a parameter)

from __future__ import annotations

import copy
from typing import Any

from iotmon.profiles.models import Profile
from tests.integration.test_api import Api, api, sql  # noqa: F401 (the fixture)

HEX: dict[str, Any] = {
    "name": "t-hex",
    "description": "a test profile",
    "channels": [
        {
            "name": "temp",
            "topic": "cmnd/{device}/rs485-mode/+/sensor-data",
            "path": "data",
            "encoding": "hex_register",
            "register": {"byteOffset": 0, "length": 2, "signed": True, "scale": 0.1},
            "sensorType": "temperature",
            "unit": "celsius",
            "thresholds": {"normalMin": 10, "normalMax": 30},
        }
    ],
}


async def test_seeded_profiles_are_valid_and_the_five_devices_use_them(api: Api) -> None:
    r = await api.get("/api/profiles")
    assert r.status_code == 200, r.text
    profiles = {p["name"]: p for p in r.json()["data"]["profiles"]}
    assert {
        "spec-temperature",
        "spec-pressure",
        "spec-vibration",
        "spec-production",
        "spec-quality",
        "f2-smart-controller",
    } <= set(profiles)
    for p in profiles.values():  # what the migration wrote passes the API's own validation
        Profile.model_validate({k: p[k] for k in ("name", "description", "channels")})
    f2 = {c["name"]: c for c in profiles["f2-smart-controller"]["channels"]}
    assert {c["encoding"] for c in f2.values()} == {
        "json_boolean",
        "string",
        "hex_register",
    }
    assert sql(api.db, "SELECT device_id, profile FROM devices ORDER BY 1")[:5] == [
        ("device-001", "spec-temperature"),
        ("device-002", "spec-pressure"),
        ("device-003", "spec-vibration"),
        ("device-004", "spec-production"),
        ("device-005", "spec-quality"),
    ]
    r = await api.get("/api/profiles/spec-quality")
    assert r.json()["data"]["devices"] == ["device-005"]


async def test_profile_lifecycle_and_roles(api: Api) -> None:
    assert (
        await api.http.post("/api/profiles", json=HEX, headers=api.h("operator"))
    ).status_code == 403
    r = await api.http.post("/api/profiles", json=HEX, headers=api.h("admin"))
    assert r.status_code == 201, r.text
    assert r.json()["data"]["channels"][0]["register"]["endian"] == "big"  # defaults filled in
    r = await api.http.post("/api/profiles", json=HEX, headers=api.h("admin"))
    assert r.status_code == 409
    body = {"description": "changed", "channels": HEX["channels"]}
    r = await api.put("/api/profiles/t-hex", json=body)
    assert r.status_code == 200
    assert r.json()["data"]["description"] == "changed"
    assert (await api.put("/api/profiles/nope", json=body)).status_code == 404

    r = await api.put("/api/devices/f2-aa/profile", json={"profile": "t-hex"})
    assert r.status_code == 200, r.text
    assert sql(api.db, "SELECT device_type, profile FROM devices WHERE device_id = 'f2-aa'") == [
        ("t-hex", "t-hex")
    ]
    assert (
        await api.put("/api/devices/f2-aa/profile", json={"profile": "nope"})
    ).status_code == 404
    r = await api.http.delete("/api/profiles/t-hex", headers=api.h("admin"))
    assert r.status_code == 409
    assert "1 device" in r.json()["error"]["message"]
    r = await api.put("/api/devices/f2-aa/profile", json={"profile": None})
    assert r.status_code == 200
    r = await api.http.delete("/api/profiles/t-hex", headers=api.h("admin"))
    assert r.status_code == 200
    assert (await api.get("/api/profiles/t-hex")).status_code == 404


def _bad(change: Any) -> dict[str, Any]:
    body = copy.deepcopy(HEX)
    change(body)
    return body


def _set(key: str, value: Any) -> Any:
    return lambda b: b["channels"][0].__setitem__(key, value)


async def test_invalid_profiles_get_a_422_naming_the_problem(api: Api) -> None:
    cases = {
        "needs exactly one '{device}'": _set("topic", "cmnd/x/y"),
        "'#' may only be the last level": _set("topic", "cmnd/{device}/#/x"),
        "wildcards are whole levels": _set("topic", "cmnd/{device}/a+/x"),
        "needs 'register'": _set("register", None),
        "for hex_register only": _set("encoding", "json_number"),
        "channels": lambda b: b.__setitem__("channels", []),
        "appears twice": lambda b: b["channels"].append(b["channels"][0]),
        "normalMin": _set("thresholds", {"normalMin": 30, "normalMax": 10}),
        "encoding": _set("encoding", "base64"),
        "scale must not be 0": _set("register", {"byteOffset": 0, "length": 2, "scale": 0}),
        "length": _set("register", {"byteOffset": 0, "length": 3}),
        "sensorType": _set("sensorType", "Temp Erature"),
        "is not built in: declare its physical range": _set("sensorType", "co2"),
        "is built in with range [-460, 10000]": _set("range", {"min": 0, "max": 50}),
        "must be below max": lambda b: b["channels"][0].update(
            sensorType="co2", range={"min": 5, "max": 5}
        ),
        "different ranges": lambda b: b["channels"].extend(
            [
                {
                    **b["channels"][0],
                    "name": "co2-a",
                    "sensorType": "co2",
                    "range": {"min": 0, "max": 1},
                },
                {
                    **b["channels"][0],
                    "name": "co2-b",
                    "sensorType": "co2",
                    "range": {"min": 0, "max": 2},
                },
            ]
        ),
        "colour": _set("colour", "red"),
    }
    for expected, change in cases.items():
        r = await api.http.post("/api/profiles", json=_bad(change), headers=api.h("admin"))
        assert r.status_code == 422, (expected, r.text)
        error = r.json()["error"]
        assert error["code"] == "validation_error"
        assert expected in error["message"] or expected in str(error["details"]), (
            expected,
            error,
        )


def _declaring(name: str, sensor_type: str, lo: float, hi: float) -> dict[str, Any]:
    return {
        "name": name,
        "channels": [
            {
                "name": "value",
                "topic": "air/{device}/telemetry",
                "path": "v",
                "encoding": "json_number",
                "sensorType": sensor_type,
                "range": {"min": lo, "max": hi},
                "unit": "ppm",
            }
        ],
    }


async def test_a_sensor_type_has_one_range_across_profiles(api: Api) -> None:
    admin = api.h("admin")
    r = await api.http.post(
        "/api/profiles", json=_declaring("air-a", "co2", 0, 5000), headers=admin
    )
    assert r.status_code == 201, r.text
    assert r.json()["data"]["channels"][0]["range"] == {"min": 0, "max": 5000}
    # Another profile may use the type with the same range...
    r = await api.http.post(
        "/api/profiles", json=_declaring("air-b", "co2", 0, 5000), headers=admin
    )
    assert r.status_code == 201, r.text
    # ... not with another one: 422 naming the profile that declares it, on create and replace.
    r = await api.http.post(
        "/api/profiles", json=_declaring("air-c", "co2", 0, 10000), headers=admin
    )
    assert r.status_code == 422, r.text
    error = r.json()["error"]
    assert error["code"] == "validation_error"
    assert "'air-a'" in error["message"]
    assert "[0, 5000]" in error["message"]
    assert [d["field"] for d in error["details"]] == ["channels.0.range"]
    assert (await api.get("/api/profiles/air-c")).status_code == 404
    body = {"channels": _declaring("x", "co2", -1, 5000)["channels"]}
    r = await api.put("/api/profiles/air-b", json=body)
    assert r.status_code == 422, r.text
    assert "'air-a'" in r.json()["error"]["message"]
    # Replacing the only profile that declares it may change the range.
    assert (await api.http.delete("/api/profiles/air-b", headers=admin)).status_code == 200
    r = await api.put("/api/profiles/air-a", json=body)
    assert r.status_code == 200, r.text
    assert r.json()["data"]["channels"][0]["range"] == {"min": -1, "max": 5000}
    assert sql(api.db, "SELECT count(*) FROM device_profiles WHERE name LIKE 'air-%%'") == [(1,)]
