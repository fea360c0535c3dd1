"""`roomserver serve --help` describes every flag and the setting behind it, and `query`
lists one subcommand per endpoint."""

from __future__ import annotations

import pytest

from processor.cli import main
from processor.query.commands import command_names


def _help(capsys: pytest.CaptureFixture[str], *argv: str) -> str:
    with pytest.raises(SystemExit) as ended:
        main([*argv, "--help"])
    assert ended.value.code == 0
    return " ".join(capsys.readouterr().out.split())


@pytest.mark.parametrize(
    ("flag", "variable"),
    [
        ("--database-url", "DATABASE_URL"),
        ("--host", "ROOMSERVER_QUERY_HOST"),
        ("--port", "ROOMSERVER_QUERY_PORT"),
        ("--workers", "ROOMSERVER_QUERY_WORKERS"),
        ("--max-connections", "ROOMSERVER_QUERY_MAX_CONNECTIONS"),
        ("--read-only", "ROOMSERVER_QUERY_READ_ONLY"),
    ],
)
def test_serve_help_describes_each_flag(
    capsys: pytest.CaptureFixture[str], flag: str, variable: str
) -> None:
    text = _help(capsys, "serve")
    assert f" {flag} " in text
    # Described in the flag's own help line and in the settings table, with its default.
    assert text.count(variable) >= 2, variable


def test_serve_help_names_the_endpoints(capsys: pytest.CaptureFixture[str]) -> None:
    text = _help(capsys, "serve")
    for words in ("latest events and state", "missing events", "backfill", "aliases",
                  "/health", "/metrics", "/openapi.json", "SQLite"):
        assert words in text


def test_query_help_lists_every_endpoint(capsys: pytest.CaptureFixture[str]) -> None:
    text = _help(capsys, "query")
    for command in command_names():
        assert command in text
