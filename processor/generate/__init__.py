"""`roomserver generate`: realistic, signed Matrix traffic for tests, demos and benchmarks.

- `keys` — the generated homeservers and their ed25519 keys;
- `view` — one server's view of a room (state, memberships, forward extremities);
- `auth_selection` — which state events an event cites as `auth_events`;
- `pdus` — finishing an event into a PDU of its room version (hash, signatures, ID);
- `rooms` — the simulation of one room and the outcome intended for each event;
- `traffic` — many rooms interleaved; `generate`, `write_jsonl`;
- `cli` — the ``generate`` subcommand.
"""

from __future__ import annotations

from processor.generate.cli import add_generate_command, run_generate
from processor.generate.keys import ServerKey
from processor.generate.model import GeneratedEvent, Outcome
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
    "Outcome",
    "ServerKey",
    "add_generate_command",
    "generate",
    "iter_generate",
    "run_generate",
    "servers_for_seed",
    "write_jsonl",
]
