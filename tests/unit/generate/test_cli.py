"""`roomserver generate` as a subcommand: arguments, output file or stdout, expectations."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import pytest

from processor.generate import add_generate_command, generate, run_generate


def _parse(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="roomserver")
    add_generate_command(parser.add_subparsers(dest="command"))
    return parser.parse_args(argv)


def test_defaults() -> None:
    args = _parse(["generate"])
    assert (args.rooms, args.events, args.room_version, args.seed, args.output) == (
        1, 1000, "10", 0, "-"
    )  # fmt: skip
    assert args.quiet is False
    assert args.handler is run_generate


def test_writes_the_same_traffic_as_the_api(tmp_path: Path) -> None:
    out, expected = tmp_path / "in.jsonl", tmp_path / "expected.json"
    argv = ["generate", "--rooms", "2", "--events", "120", "--room-version", "mixed"]
    argv += ["--seed", "8", "--output", str(out), "--expected", str(expected)]
    assert run_generate(_parse(argv)) == 0
    traffic = generate(2, 120, "mixed", seed=8)
    lines = out.read_text(encoding="utf-8").splitlines()
    assert [json.loads(line) for line in lines] == traffic.inputs
    assert json.loads(expected.read_text(encoding="utf-8")) == traffic.expected


def test_stdout_by_default(capsys: pytest.CaptureFixture[str]) -> None:
    assert run_generate(_parse(["generate", "--events", "7", "--room-version", "3"])) == 0
    lines = capsys.readouterr().out.splitlines()
    assert len(lines) == 7
    assert json.loads(lines[0])["event"]["type"] == "m.room.create"


def test_unknown_room_version_is_a_usage_error(capsys: pytest.CaptureFixture[str]) -> None:
    assert run_generate(_parse(["generate", "--room-version", "99", "--events", "3"])) == 2
    assert "unknown room version '99'" in capsys.readouterr().err


def test_summary_on_stderr_unless_quiet(capsys: pytest.CaptureFixture[str]) -> None:
    argv = ["generate", "--rooms", "2", "--events", "400", "--room-version", "10", "--seed", "3"]
    assert run_generate(_parse(argv)) == 0
    err = capsys.readouterr().err
    assert err.startswith("roomserver generate: 400 events in 2 rooms (accepted ")
    assert "merges," in err and "with conflicted state (" in err and "per 1,000 events" in err
    assert run_generate(_parse([*argv, "--quiet"])) == 0
    assert capsys.readouterr().err == ""
