"""What the generated traffic contains: determinism, forks, and the realistic mix.

Event kinds are read off the PDUs and the membership before each event (client-server API
`m.room.member`: a leave sent by someone else is a kick, a leave of a banned user an unban,
...), not from the generator's own labels.
"""

from __future__ import annotations

import io
import json
from collections import Counter

import pytest

from processor.errors import UnknownRoomVersion
from processor.generate import generate, write_jsonl
from processor.generate.traffic import versions_for_rooms
from tests.unit.generate.conftest import Traced, traced


def test_same_seed_same_traffic() -> None:
    first = generate(3, 400, "mixed", seed=42)
    second = generate(3, 400, "mixed", seed=42)
    assert first.inputs == second.inputs
    assert first.expected == second.expected
    other = generate(3, 400, "mixed", seed=43)
    assert other.inputs != first.inputs


def test_expected_covers_every_event_and_only_outcomes() -> None:
    traffic = generate(2, 500, "10", seed=1)
    assert len(traffic.inputs) == 500
    assert len(traffic.expected) == 500
    assert set(traffic.expected.values()) <= {"accepted", "rejected", "soft_failed"}


def test_write_jsonl_one_input_per_line() -> None:
    traffic = generate(1, 50, "12", seed=5)
    out = io.StringIO()
    write_jsonl(traffic, out)
    lines = out.getvalue().splitlines()
    assert [json.loads(line) for line in lines] == traffic.inputs


def test_mixed_cycles_over_every_version() -> None:
    assert versions_for_rooms(14, "mixed") == [str(n) for n in range(1, 13)] + ["1", "2"]
    traffic = generate(12, 600, "mixed", seed=9)
    assert {i["room_version"] for i in traffic.inputs} == {str(n) for n in range(1, 13)}
    with pytest.raises(UnknownRoomVersion):
        generate(1, 10, "13", seed=0)


def _kinds(t: Traced) -> Counter[str]:
    """What each event does, judged from the PDU and the state before it."""
    kinds: Counter[str] = Counter()
    for g in t.generated:
        event = t.events[g.event_id]
        assert g.state_before is not None
        if g.outcome != "accepted":
            kinds[g.outcome] += 1
            continue
        if len(event.prev_event_ids) >= 2:
            kinds[f"merge{len(event.prev_event_ids)}"] += 1
        if event.type != "m.room.member":
            kinds[event.type] += 1
            continue
        assert event.state_key is not None
        before_id = g.state_before.get(("m.room.member", event.state_key))
        before = t.events[before_id].content["membership"] if before_id else None
        membership = event.content["membership"]
        own = event.sender == event.state_key
        if membership == "join" and "join_authorised_via_users_server" in event.content:
            kinds["restricted_join"] += 1
        elif membership == "join":
            kinds["join_after_invite" if before == "invite" else "join"] += 1
        elif membership == "leave" and own:
            kinds["leave"] += 1
        elif membership == "leave" and before == "ban":
            kinds["unban"] += 1
        elif membership == "leave":
            kinds["kick"] += 1
        else:
            kinds[membership] += 1
    return kinds


@pytest.mark.parametrize("version_id", ["6", "7", "8", "10", "12"])
def test_every_kind_of_event_appears(version_id: str) -> None:
    kinds = _kinds(traced(3, 3000, version_id, seed=11))
    expected = {
        "m.room.create", "m.room.message", "join", "leave", "invite", "join_after_invite",
        "kick", "ban", "unban", "m.room.power_levels", "m.room.join_rules", "m.room.topic",
        "m.room.name", "m.room.history_visibility", "m.room.redaction", "merge2", "rejected",
    }  # fmt: skip
    if int(version_id) >= 7:
        expected.add("knock")
    if int(version_id) >= 8:
        expected.add("restricted_join")
    missing = expected - set(kinds)
    assert not missing, f"missing {missing} in {dict(kinds)}"
    if int(version_id) < 7:
        assert "knock" not in kinds
    if int(version_id) < 8:
        assert "restricted_join" not in kinds
    # Messages are most of the traffic.
    assert kinds["m.room.message"] > sum(kinds.values()) / 3


def test_forks_merge_two_and_three_branches() -> None:
    widths: Counter[int] = Counter()
    for seed in range(3):
        traffic = generate(4, 1500, "10", seed=seed)
        for item in traffic.inputs:
            widths[len(item["event"]["prev_events"])] += 1
    assert widths[2] > 0 and widths[3] > 0
    assert max(widths) <= 3


def test_join_rules_cover_the_version() -> None:
    traffic = generate(3, 3000, "10", seed=2)
    rules = {
        i["event"]["content"]["join_rule"]
        for i in traffic.inputs
        if i["event"]["type"] == "m.room.join_rules"
    }
    assert rules == {"public", "invite", "knock", "restricted", "knock_restricted"}
