"""The command line documents itself: every flag of every command has a description, each
command lists (and takes flags for) only the settings it reads, and secrets never show.
Also: README.md's least-privilege role is the one the secured tests use."""

from __future__ import annotations

import argparse
from collections.abc import Iterator
from pathlib import Path

import pytest

from processor.cli import build_parser
from processor.config import SETTINGS, Settings, redacted_url, settings_for
from tests.fixtures.secured import ROLE_SQL

README = Path(__file__).resolve().parents[2] / "README.md"


def parsers(
    parser: argparse.ArgumentParser, path: tuple[str, ...] = ()
) -> Iterator[tuple[tuple[str, ...], argparse.ArgumentParser]]:
    """Every parser under `parser` (itself first), with its command path."""
    yield path, parser
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, child in action.choices.items():
                yield from parsers(child, (*path, name))


def commands() -> dict[str, argparse.ArgumentParser]:
    return {" ".join(path): p for path, p in parsers(build_parser()) if path}


def test_every_action_of_every_command_has_help() -> None:
    missing = [
        f"roomserver {' '.join(path)} {'/'.join(action.option_strings) or action.dest}"
        for path, parser in parsers(build_parser())
        for action in parser._actions
        if not (action.help and action.help.strip()) or action.help == argparse.SUPPRESS
    ]
    assert missing == []


def test_the_tree_holds_every_command() -> None:
    assert {"run", "produce", "tail", "rebuild", "dlq", "dlq list", "dlq show",
            "dlq replay", "ingest", "state", "generate"} <= set(commands())


SETTINGS_OF = {
    "run": "run", "produce": "produce", "tail": "tail", "rebuild": "rebuild",
    "dlq list": "dlq", "dlq show": "dlq", "dlq replay": "dlq",
}


@pytest.mark.parametrize("command", sorted(SETTINGS_OF))
def test_a_command_lists_exactly_the_settings_it_reads(command: str) -> None:
    help_text = commands()[command].format_help()
    used = {info.env for info in settings_for(SETTINGS_OF[command])}
    listed = {info.env for info in SETTINGS if f"  {info.env} " in help_text}
    assert listed == used


def test_produce_and_tail_need_no_database_nor_consumer_group() -> None:
    for command in ("produce", "tail"):
        names = {info.name for info in settings_for(command)}
        assert not names & {"database_url", "consumer_group", "batch_size", "metrics_port"}
        flags = {o for a in commands()[command]._actions for o in a.option_strings}
        assert "--database-url" not in flags and "--batch-size" not in flags
    assert "input_topic" not in {info.name for info in settings_for("tail")}
    assert "max_produce_bytes" in {info.name for info in settings_for("produce")}


def test_no_flag_takes_a_secret_and_help_shows_no_default_for_one() -> None:
    secret = [info for info in SETTINGS if info.secret]
    assert [info.name for info in secret] == ["kafka_sasl_password"]
    for command, parser in commands().items():
        flags = " ".join(o for a in parser._actions for o in a.option_strings)
        assert "password" not in flags, command
    line = next(
        line for line in commands()["run"].format_help().splitlines()
        if "KAFKA_SASL_PASSWORD" in line
    )
    assert "default" not in line


def test_settings_repr_and_redacted_urls_hide_passwords() -> None:
    settings = Settings(
        kafka_sasl_password="hunter2", database_url="postgresql://rs:hunter2@db/rs"
    )
    assert "hunter2" not in repr(settings)
    for url in (
        "postgresql://rs:hunter2@db:5432/rs?sslmode=verify-full",
        "postgresql://rs@db/rs?password=hunter2&sslmode=require",
        "host=db user=rs password=hunter2",
    ):
        assert "hunter2" not in redacted_url(url)
        assert "***" in redacted_url(url)
    assert redacted_url("postgresql://rs@db/rs") == "postgresql://rs@db/rs"


def test_the_default_bootstrap_is_the_local_broker() -> None:
    assert Settings().kafka_bootstrap_servers == "127.0.0.1:19092"


def test_readme_documents_the_least_privilege_role_the_tests_use() -> None:
    documented = ROLE_SQL.format(role="roomserver", password="CHANGE-ME", database="roomserver")
    assert documented in README.read_text()
