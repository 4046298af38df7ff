"""The key figures of a processing group: each member's share, summed (roles/processing.py)."""

from __future__ import annotations

import json
from typing import Any

import orjson
from hypothesis import given
from hypothesis import strategies as hst

from iotmon.roles.processing import MEMBER_FRESH_S, MEMBER_STALE_S, combine_shares

NOW = 1_800_000_000.0


def share(devices: int, at: float = NOW) -> dict[str, Any]:
    return {"devices": devices, "active": devices, "points": 60 * devices, "at": at}


def test_fresh_shares_are_summed_and_stale_ones_removed() -> None:
    mine = share(3)
    members = {
        b"me": orjson.dumps(share(99, NOW - 30)),  # this member's last one: replaced by mine
        b"other": orjson.dumps(share(4, NOW - 1)),
        b"late": orjson.dumps(share(5, NOW - MEMBER_FRESH_S - 1)),  # not counted, not removed
        b"gone": orjson.dumps(share(6, NOW - MEMBER_STALE_S - 1)),
        b"ahead": orjson.dumps(share(7, NOW + 2)),  # a clock a little ahead: counted
        b"future": orjson.dumps(share(8, NOW + 10 * MEMBER_STALE_S)),  # would count forever
    }
    shares, stale = combine_shares(members, "me", mine, NOW)
    assert sorted(s["devices"] for s in shares) == [3, 4, 7]
    assert sorted(stale) == [b"future", b"gone"]


@given(
    hst.dictionaries(
        hst.binary(max_size=20),
        hst.one_of(
            hst.binary(max_size=60),
            hst.builds(
                lambda d: json.dumps(d).encode(),  # big integers and Infinity too
                hst.dictionaries(
                    hst.sampled_from(["devices", "active", "points", "at", "x"]),
                    hst.one_of(
                        hst.integers(-5, 10**20),
                        hst.floats(allow_nan=False),
                        hst.text(max_size=5),
                        hst.none(),
                        hst.lists(hst.integers(), max_size=2),
                    ),
                ),
            ),
        ),
        max_size=6,
    )
)
def test_whatever_is_in_the_hash_a_member_counts_itself_and_never_fails(
    members: dict[bytes, bytes],
) -> None:
    """Fields written by anyone (another version, a script, garbage): the member's own share
    is always counted, a share that does not parse is stale (removed), none raises."""
    mine = share(2)
    shares, stale = combine_shares(members, "me", mine, NOW)
    assert shares[0] is mine
    for s in shares[1:]:
        assert all(isinstance(s[k], int) and s[k] >= 0 for k in ("devices", "active", "points"))
    assert set(stale) <= set(members)
