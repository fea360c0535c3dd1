"""History visibility for servers (processor.matrix.visibility), case by case from the spec's
definitions of `world_readable`, `shared`, `invited` and `joined`."""

from __future__ import annotations

import pytest

from processor.matrix.visibility import (
    history_visibility_of,
    server_may_see_event,
    server_name_of,
)


def test_world_readable_is_visible_to_a_server_that_never_joined() -> None:
    # "may be shared by any participating homeserver with anyone, regardless of whether
    # they have ever joined the room"
    assert server_may_see_event("world_readable", [], [])


@pytest.mark.parametrize("now", [[], ["leave"], ["invite"], ["ban"]])
def test_shared_is_hidden_from_a_server_with_no_user_in_the_room(now: list[str]) -> None:
    assert not server_may_see_event("shared", [], now)
    assert not server_may_see_event("shared", ["leave"], now)


def test_shared_is_visible_to_a_server_whose_user_joined_later() -> None:
    # "Previous events are always accessible to newly joined members."
    assert server_may_see_event("shared", [], ["join"])
    assert server_may_see_event("shared", ["leave"], ["leave", "join"])


def test_shared_is_visible_to_a_server_in_the_room_at_the_event() -> None:
    assert server_may_see_event("shared", ["join"], ["leave"])
    assert server_may_see_event("shared", ["invite"], [])


def test_invited_starts_at_the_invite() -> None:
    # "accessible to newly joined members from the point they were invited onwards"
    assert server_may_see_event("invited", ["invite"], [])
    assert server_may_see_event("invited", ["join"], [])
    # not before the invite, even for a user joined now
    assert not server_may_see_event("invited", [], ["join"])
    # "stop being accessible when the member's state changes to something other than
    # invite or join"
    assert not server_may_see_event("invited", ["leave", "ban"], ["join"])


def test_joined_needs_a_member_joined_at_the_event() -> None:
    # "accessible to newly joined members from the point they joined the room onwards"
    assert server_may_see_event("joined", ["leave", "join"], [])
    assert not server_may_see_event("joined", ["invite"], ["join"])
    assert not server_may_see_event("joined", ["knock", "leave"], ["join"])


def test_history_visibility_of_content() -> None:
    assert history_visibility_of(None) == "shared"  # no event in the state: the default
    assert history_visibility_of({"history_visibility": "joined"}) == "joined"
    assert history_visibility_of({"history_visibility": "world_readable"}) == "world_readable"
    # an unknown or malformed value is the default
    assert history_visibility_of({"history_visibility": "everyone"}) == "shared"
    assert history_visibility_of({"history_visibility": 3}) == "shared"
    assert history_visibility_of({}) == "shared"


def test_server_name_of_user_ids_with_ports() -> None:
    assert server_name_of("@a:example.org") == "example.org"
    assert server_name_of("@a:example.org:8448") == "example.org:8448"
    assert server_name_of("@weird") == ""
