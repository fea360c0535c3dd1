"""One error tree: every error the roomserver raises on purpose is a
`RoomserverError`, the tree in `processor.errors` is the one drawn in its docstring, and
`CorruptState` is not a (retried) `StorageError`."""

from __future__ import annotations

import inspect

import msgspec
import pytest

import processor.errors as errors
import schemas.errors
from processor.matrix.canonical_json import CanonicalJsonError
from processor.pipeline.outputs import OutputTooLarge
from schemas.output import NewRoomEvent, reassemble


def _exported_classes() -> list[type[BaseException]]:
    found = [getattr(errors, name) for name in errors.__all__]
    assert all(inspect.isclass(c) and issubclass(c, BaseException) for c in found)
    return found


def test_the_base_is_one_class_shared_with_schemas() -> None:
    """`schemas` defines it (it must import without `processor`); `processor.errors`
    re-exports the very same class, so `except RoomserverError` catches schema errors."""
    assert errors.RoomserverError is schemas.errors.RoomserverError
    assert errors.SchemaError is schemas.errors.SchemaError
    assert errors.InvalidEvent is schemas.errors.InvalidEvent


@pytest.mark.parametrize("cls", _exported_classes(), ids=lambda c: c.__name__)
def test_every_exported_error_is_a_roomserver_error(cls: type[BaseException]) -> None:
    assert issubclass(cls, errors.RoomserverError)


@pytest.mark.parametrize(
    "cls",
    [schemas.errors.SchemaError, schemas.errors.InvalidEvent, schemas.errors.EventTooLarge,
     errors.UnknownRoomVersion],
    ids=lambda c: c.__name__,
)
def test_schema_errors_are_roomserver_errors_and_still_value_errors(
    cls: type[BaseException],
) -> None:
    """The issue: `InvalidEvent` was documented as a `RoomserverError` but only a
    `ValueError`, so the CLI did not catch it. It stays a `ValueError` for consumers of
    `schemas` that catch that."""
    assert issubclass(cls, errors.RoomserverError)
    assert issubclass(cls, ValueError)


def test_corrupt_state_is_not_a_storage_error() -> None:
    """A `StorageError` is retried; a corrupt database would be retried forever."""
    assert issubclass(errors.CorruptState, errors.RoomserverError)
    assert not issubclass(errors.CorruptState, errors.StorageError)


def test_not_found_is_not_a_config_error() -> None:
    """"Room not in database" used to be a `ConfigError` (exit 2, "configuration error")."""
    for cls in (errors.NotFound, errors.RoomNotFound, errors.EventNotFound):
        assert not issubclass(cls, errors.ConfigError)
    assert issubclass(errors.RoomNotFound, errors.NotFound)
    assert issubclass(errors.EventNotFound, errors.NotFound)
    assert str(errors.RoomNotFound("!r:x")) == "room !r:x is not in this database"
    assert str(errors.EventNotFound("$e", "!r:x")) == "event $e is not in room !r:x"
    assert str(errors.EventNotFound("$e")) == "event $e is not in this database"


def test_the_docstring_draws_every_class() -> None:
    """The drawn tree is the documentation of what a caller can do: it must name every
    class, under its real parent."""
    doc = errors.__doc__ or ""
    drawn: dict[str, int] = {}
    for line in doc.splitlines():
        stripped = line.lstrip(" │├└─")
        name = stripped.split(" ", 1)[0]
        # A class is drawn where a line starts with it, or with a branch and it; the depth
        # is its indentation. (Continuation lines start with "│" and lower-case prose.)
        on_branch = "── " in line or line.strip() == stripped
        if name[:1].isupper() and name.isidentifier() and on_branch:
            drawn.setdefault(name, len(line) - len(stripped))
    elsewhere = [OutputTooLarge, CanonicalJsonError]
    classes = {c.__name__: c for c in [*_exported_classes(), *elsewhere]}
    for name, cls in classes.items():
        assert name in drawn, f"{name} is not drawn in processor.errors' docstring"
        if cls is errors.RoomserverError:
            continue
        parent = cls.__mro__[1]
        assert drawn[name] > drawn[parent.__name__], f"{name} is not drawn under {parent}"


def test_reassembling_mismatched_parts_is_a_schema_error() -> None:
    """Parts come off the wire: a mismatch is bad input (a `SchemaError`), not a bare
    `ValueError` a caller cannot tell from a bug."""
    with pytest.raises(schemas.errors.SchemaError, match="no parts"):
        reassemble([])
    second = NewRoomEvent(
        room_id="!r:x", stream_position=1, event=msgspec.Raw(b"null"), room_version="10",
        latest_event_ids=["$e"], part=2, parts=2,
    )
    with pytest.raises(errors.RoomserverError, match=r"expected parts 1\.\.2"):
        reassemble([second])
