"""The Matrix authorization rules for room versions 1–12, and auth-event selection.

Three entry points, all pure:

* `auth_types_for_event(event, version)`: the (type, state_key) pairs the server-server
  spec's "auth events selection" picks for an event;
* `check_auth_events_shape(event, auth_events, version, rejected=None)`: the checks on the
  event's own `auth_events` list that need no room state (rule 2 of v1–v11, rules 2–3 of
  v12: no duplicates, only selected types, none rejected, all in the event's room, the
  create event present (v1–v11) or absent and implied by the room ID (v12));
* `check_auth(event, auth_state, version)`: rule 1 (`m.room.create`) and the state-dependent
  rules, against `auth_state` — a map (type, state_key) → event that the caller picks (the
  event's auth events, the state before it, or the room's current state). In v12 the create
  event is never listed in `auth_events` but is still read from `auth_state`: the caller
  adds it (it is the event whose ID is the room ID).

Both checks raise `AuthError("<rule context>: <reason>")`, never anything else, whatever the
content of the event or the state holds.

Rule numbers differ by version family; comments cite them as "v1–v5 rule 5.2.3" etc.:

* v1–v2: 1 create, 2 auth events, 3 m.federate, 4 aliases, 5 member, 6 sender joined,
  7 third-party invite, 8 required level, 9 `@` state keys, 10 power levels, 11 redaction;
* v3–v5: as v1–v2 without the redaction rule (11 is "otherwise, allow");
* v6–v11: no aliases rule: 4 member, 5 sender joined, 6 third-party invite, 7 required level,
  8 `@` state keys, 9 power levels;
* v12: a new rule 2 (room ID = create event ID), so: 3 auth events, 4 m.federate, 5 member,
  6 sender joined, 7 third-party invite, 8 required level, 9 `@` state keys, 10 power levels.

Signatures: "events must be signed by the server denoted by the sender" and PDU signature
verification are the federation API's job before an event reaches the roomserver. Two rules
are checked here: the `join_authorised_via_users_server` rule (v8+) checks that the PDU carries
a signature from the authorising server (a presence check, as the reference server does; the
signature itself was verified with the PDU), and third-party invites verify the `signed` block
cryptographically (see `processor.matrix.third_party_invite`).

Modules: `rules` (auth-event selection, the checks on `auth_events`, rule 1 and the
state-dependent rules), `member` (the m.room.member rules, by membership), `power_levels`
(changes to m.room.power_levels), `common` (event types, memberships, message helpers).
"""

from __future__ import annotations

from processor.matrix.auth.rules import auth_types_for_event, check_auth, check_auth_events_shape

__all__ = [
    "auth_types_for_event",
    "check_auth",
    "check_auth_events_shape",
]
