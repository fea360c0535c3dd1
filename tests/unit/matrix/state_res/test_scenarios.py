"""State resolution v2 / v2.1 scenarios: one line per (scenario, room version), with the
keys whose resolved event the line pins (None: the key is absent from the resolved state).
The scenarios and the reasoning behind each expectation are in `scenarios.py`."""

from __future__ import annotations

import pytest

from processor.matrix.room_versions import room_version
from tests.unit.matrix.state_res.builder import ALICE, BOB, EVE, ZARA
from tests.unit.matrix.state_res.scenarios import JR, MEMBER, PL, SCENARIOS, TOPIC

TABLE: list[tuple[str, str, dict[tuple[str, str], str | None]]] = [
    ("ban_vs_power_levels", "2", {(PL, ""): "pl_demote_bob", (MEMBER, EVE): "eve_join"}),
    ("ban_vs_power_levels", "11", {(PL, ""): "pl_demote_bob", (MEMBER, EVE): "eve_join"}),
    ("ban_vs_power_levels", "12", {(PL, ""): "pl_demote_bob", (MEMBER, EVE): "eve_join"}),
    ("join_rule_evasion", "2", {(JR, ""): "jr_invite", (MEMBER, EVE): None}),
    ("join_rule_evasion", "11", {(JR, ""): "jr_invite", (MEMBER, EVE): None}),
    ("join_rule_evasion", "12", {(JR, ""): "jr_invite", (MEMBER, EVE): None}),
    ("offtopic_power_levels", "6", {(PL, ""): "pl_alice", (TOPIC, ""): None}),
    ("offtopic_power_levels", "12", {(PL, ""): "pl_alice", (TOPIC, ""): None}),
    ("topic_reset", "10", {(TOPIC, ""): "topic_alice", (PL, ""): "pl_demote_bob"}),
    ("topic_reset", "12", {(TOPIC, ""): "topic_alice", (PL, ""): "pl_demote_bob"}),
    ("mainline_sort", "9", {(TOPIC, ""): "topic_new_pl", (PL, ""): "pl3"}),
    ("mainline_sort", "12", {(TOPIC, ""): "topic_new_pl", (PL, ""): "pl3"}),
    # MSC4297 problem A: v2 loses the join rules; v2.1 keeps the newest.
    ("msc4297_problem_a", "11", {(JR, ""): None, (MEMBER, BOB): "bob_leave"}),
    ("msc4297_problem_a", "12", {(JR, ""): "jr_public", (MEMBER, BOB): "bob_leave"}),
    # MSC4297 problem B: v2 resets the power levels; v2.1 keeps Bob's promotion of Charlie.
    ("msc4297_problem_b", "11", {(PL, ""): "pl0", (MEMBER, ZARA): "zara_join"}),
    ("msc4297_problem_b", "12", {(PL, ""): "pl_promote_charlie", (MEMBER, ZARA): "zara_join"}),
    ("kick_then_rejoin", "11", {(MEMBER, EVE): "eve_rename"}),
    ("kick_then_rejoin", "12", {(MEMBER, EVE): "eve_rename"}),
    ("ban_beats_rename", "11", {(MEMBER, EVE): "ban_eve"}),
    ("ban_beats_rename", "12", {(MEMBER, EVE): "ban_eve"}),
    ("three_forks", "4", {(TOPIC, ""): "topic_a", (MEMBER, ZARA): "zara_join"}),
    ("three_forks", "12", {(TOPIC, ""): "topic_a", (MEMBER, ZARA): "zara_join"}),
    ("rejected_auth_event_not_used", "11", {(TOPIC, ""): "topic_alice", (MEMBER, EVE): None}),
    ("rejected_auth_event_not_used", "12", {(TOPIC, ""): "topic_alice", (MEMBER, EVE): None}),
]


@pytest.mark.parametrize(
    ("scenario", "version_id", "expected"),
    TABLE,
    ids=[f"{name}-v{version}" for name, version, _ in TABLE],
)
def test_scenario(
    scenario: str, version_id: str, expected: dict[tuple[str, str], str | None]
) -> None:
    version = room_version(version_id)
    room, state_sets = SCENARIOS[scenario](version)
    resolved = room.resolve(*state_sets)
    for key, event_name in expected.items():
        assert resolved.get(key) == event_name, key
    # Whatever the scenario, the keys every state set agrees on are kept, and the room's
    # create event and creator's join are among them.
    assert resolved[("m.room.create", "")] == "create"
    assert resolved[(MEMBER, ALICE)] == "alice_join"
