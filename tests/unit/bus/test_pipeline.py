"""The consumer pipeline's parts: no decoder exception and no refused record stops a batch."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence

import pytest
from hypothesis import given
from hypothesis import strategies as st

from iotmon.bus.pipeline import Rejection, decode_batch, isolate, isolate_async


def refuses(exc: BaseException) -> bool:
    return isinstance(exc, ValueError)


@given(st.lists(st.integers(0, 50), max_size=60), st.sets(st.integers(0, 50)))
def test_isolate_writes_the_good_in_order_and_finds_every_bad(
    items: list[int], bad: set[int]
) -> None:
    written: list[int] = []

    def write(part: Sequence[int]) -> None:
        if bad & set(part):
            raise ValueError("refused")
        written.extend(part)

    result = isolate(write, items, refuses=refuses)
    assert result.written == written == [x for x in items if x not in bad]
    assert [x for x, _ in result.refused] == [x for x in items if x in bad]


def test_isolate_reraises_weather() -> None:
    def write(part: Sequence[int]) -> None:
        raise OSError("connection lost")

    with pytest.raises(OSError, match="connection lost"):
        isolate(write, [1, 2, 3], refuses=refuses)


def test_isolate_async_agrees() -> None:
    async def write(part: Sequence[int]) -> None:
        if 4 in part:
            raise ValueError("no fours")

    result = asyncio.run(isolate_async(write, list(range(8)), refuses=refuses))
    assert result.written == [0, 1, 2, 3, 5, 6, 7]
    assert [x for x, _ in result.refused] == [4]


def test_decode_batch_turns_a_decoder_exception_into_one_rejection() -> None:
    def decode(raws: list[bytes]) -> tuple[list[bytes], list[tuple[int, Rejection]]]:
        if b"boom" in raws:
            raise RuntimeError("the decoder fell over")
        return [r for r in raws if r != b"bad"], [
            (i, Rejection("bad", "a bad one")) for i, r in enumerate(raws) if r == b"bad"
        ]

    items, rejects = decode_batch(decode, [b"a", b"boom", b"bad", b"c"])
    assert items == [b"a", b"c"]
    assert [(i, r.reason) for i, r in rejects] == [(1, "decoder_error"), (2, "bad")]
    assert "RuntimeError" in rejects[0][1].detail
