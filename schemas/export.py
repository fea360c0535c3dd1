"""Export JSON Schema for every wire message: ``python -m schemas.export [DIRECTORY]``.

Writes one file per message into ``schemas/jsonschema/`` (or DIRECTORY) so services written
in other languages can validate and generate code for what they produce and consume. The
committed files are kept up to date by a unit test (regenerate with this command after
changing a Struct).
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import msgspec

from schemas.dead_letter import DeadLetter
from schemas.input import InputRoomEvent
from schemas.output import OutputEvent
from schemas.pdu import PduV1, PduV3, PduV11, PduV12
from schemas.query import ENDPOINTS, QueryErrorBody, path_of

__all__ = ["DEFAULT_DIRECTORY", "MESSAGES", "render", "write_all"]

DEFAULT_DIRECTORY = Path(__file__).resolve().parent / "jsonschema"

#: File stem -> (type, title, description).
MESSAGES: dict[str, tuple[Any, str, str]] = {
    "input_room_event": (
        InputRoomEvent,
        "InputRoomEvent",
        "A message on the roomserver's input topic (Kafka key: the room ID).",
    ),
    "output_event": (
        OutputEvent,
        "OutputEvent",
        "A message on the roomserver's output topic: a union tagged by `type`.",
    ),
    "dead_letter": (
        DeadLetter,
        "DeadLetter",
        "A record on the dead-letter topic: an input that could not be processed.",
    ),
    "pdu_v1": (PduV1, "PDU (room versions 1, 2)", "A room event in the v1/v2 format."),
    "pdu_v3": (PduV3, "PDU (room versions 3-10)", "A room event in the v3-v10 format."),
    "pdu_v11": (PduV11, "PDU (room version 11)", "A room event in the v11 format."),
    "pdu_v12": (PduV12, "PDU (room version 12)", "A room event in the v12 format."),
}

# The query API (`roomserver serve`): each endpoint's request and response, and the error.
MESSAGES["query_error"] = (QueryErrorBody, "QueryErrorBody", "An error of the query API.")
for _name, (_request, _response) in ENDPOINTS.items():
    _stem = "query_" + _name.replace("/", "_")
    if _request is not None:
        MESSAGES[_stem + "_request"] = (
            _request, _request.__name__, f"The request of {path_of(_name)} (query API)."
        )
    MESSAGES[_stem + "_response"] = (
        _response, _response.__name__, f"The response of {path_of(_name)} (query API)."
    )


def render(stem: str) -> str:
    """The JSON Schema document for one message, as committed (sorted keys, newline)."""
    message_type, title, description = MESSAGES[stem]
    schema = msgspec.json.schema(message_type)
    document = {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "title": title,
        "description": description,
        **schema,
    }
    return json.dumps(document, indent=2, sort_keys=True, ensure_ascii=False) + "\n"


def write_all(directory: Path = DEFAULT_DIRECTORY) -> list[Path]:
    directory.mkdir(parents=True, exist_ok=True)
    written = []
    for stem in MESSAGES:
        path = directory / f"{stem}.json"
        path.write_text(render(stem), encoding="utf-8")
        written.append(path)
    return written


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    directory = Path(args[0]) if args else DEFAULT_DIRECTORY
    for path in write_all(directory):
        print(path)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
