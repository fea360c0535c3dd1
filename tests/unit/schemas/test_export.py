"""The committed JSON Schema files (schemas/jsonschema/) match the Structs."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from schemas.export import DEFAULT_DIRECTORY, MESSAGES, render, write_all


@pytest.mark.parametrize("stem", sorted(MESSAGES))
def test_committed_schema_is_up_to_date(stem: str) -> None:
    path = DEFAULT_DIRECTORY / f"{stem}.json"
    assert path.exists(), f"{path} missing: run `python -m schemas.export`"
    assert path.read_text(encoding="utf-8") == render(stem), (
        f"{path} is stale: run `python -m schemas.export` and commit the result"
    )


def test_no_stray_schema_files() -> None:
    committed = {p.stem for p in DEFAULT_DIRECTORY.glob("*.json")}
    assert committed == set(MESSAGES)


def test_export_writes_valid_json(tmp_path: Path) -> None:
    paths = write_all(tmp_path)
    assert {p.name for p in paths} == {f"{stem}.json" for stem in MESSAGES}
    output = json.loads((tmp_path / "output_event.json").read_text())
    assert output["title"] == "OutputEvent"
    tags = {
        definition["properties"]["type"]["enum"][0]
        for definition in output["$defs"].values()
    }
    assert tags == {
        "new_room_event", "old_room_event", "new_invite_event", "retire_invite_event",
        "redacted_event",
    }
