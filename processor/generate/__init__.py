"""`roomserver generate`: realistic, signed Matrix traffic for tests, demos and benchmarks.

- `keys` — the generated homeservers and their ed25519 keys;
- `model` — outcomes, `GeneratedEvent`, the clock, a generated room's constants, `Summary`;
- `view` — one server's view of a room (state, memberships, its tip);
- `dag` — the room's accepted DAG as a roomserver sees it: numeric IDs, forward
  extremities, state resolution at merges and of the current state;
- `auth_selection` — which state events an event cites as `auth_events`;
- `pdus` — finishing an event into a PDU of its room version (hash, signatures, ID);
- `building` — the base of a room simulation: users, levels, building and judging events;
- `membership`, `power`, `rejections` — the actions (memberships; power levels, join rules
  and other state; unauthorised events);
- `branches` — forks: long-lived conflicting branches, partial and final merges;
- `rooms` — `RoomSimulation`, one room: the actions' weights and the room's creation;
- `traffic` — many rooms interleaved; `generate`, `write_jsonl`;
- `shapes` — counting merges with conflicted state (and what conflicts) in generated traffic;
- `cli` — the ``generate`` subcommand.
"""

from __future__ import annotations

from processor.generate.cli import add_generate_command, run_generate
from processor.generate.keys import ServerKey
from processor.generate.model import GeneratedEvent, IntendedOutcome
from processor.generate.traffic import (
    GeneratedTraffic,
    generate,
    iter_generate,
    servers_for_seed,
    write_jsonl,
)

__all__ = [
    "GeneratedEvent",
    "GeneratedTraffic",
    "IntendedOutcome",
    "ServerKey",
    "add_generate_command",
    "generate",
    "iter_generate",
    "run_generate",
    "servers_for_seed",
    "write_jsonl",
]
