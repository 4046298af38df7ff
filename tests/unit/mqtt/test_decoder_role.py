"""The MQTT decoder role's batch decode: a record whose decoding raises (which the fuzz tests
say ``decode_record`` does not do) is rejected alone, as ``decoder_error``; the others of the
batch decode as usual."""

from __future__ import annotations

from typing import Any

import pytest

from iotmon.bus.pipeline import Reasons, Rejection
from iotmon.mqtt.decoder import Catalog, Decoded
from iotmon.roles import mqtt_decoder
from iotmon.roles.mqtt_decoder import MqttDecoderRole


class _Msg:
    def __init__(self, value: bytes) -> None:
        self._value = value

    def value(self) -> bytes:
        return self._value

    def headers(self) -> list[tuple[str, bytes]]:
        return []


def test_a_record_that_raises_is_rejected_alone(monkeypatch: pytest.MonkeyPatch) -> None:
    role = object.__new__(MqttDecoderRole)
    role.catalog, role.root = Catalog(), ""

    def fake(value: bytes, headers: Any, catalog: Catalog, root: str) -> Decoded | Rejection:
        if value == b"boom":
            raise RuntimeError("surprise")
        if value == b"bad":
            return Rejection("invalid_json", "not JSON")
        return Decoded([], False, None)  # type: ignore[arg-type]

    monkeypatch.setattr(mqtt_decoder, "decode_record", fake)
    msgs = [_Msg(b"ok"), _Msg(b"boom"), _Msg(b"bad"), _Msg(b"ok")]
    decoded, rejected = role._decode(msgs)  # type: ignore[arg-type]
    assert [i for i, _ in decoded] == [0, 3]
    assert [(i, r.reason) for i, r in rejected] == [(1, Reasons.DECODER_ERROR), (2, "invalid_json")]
    assert "RuntimeError: surprise" in rejected[0][1].detail
