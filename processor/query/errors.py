"""Errors of the query API, each with its HTTP status and Matrix error code.

They live here, not in `processor.errors`: they are answers to a caller (a 404 is a normal
reply), not failures of the roomserver.
"""

from __future__ import annotations

__all__ = ["BadRequest", "Conflict", "Forbidden", "NotFound", "QueryError"]


class QueryError(Exception):
    """An answer that is an error: `status` (HTTP), `errcode` (Matrix), one-line message."""

    status = 400
    errcode = "M_UNKNOWN"

    def __init__(self, message: str, errcode: str | None = None) -> None:
        super().__init__(message)
        if errcode is not None:
            self.errcode = errcode

    @property
    def message(self) -> str:
        return str(self)


class BadRequest(QueryError):
    status = 400
    errcode = "M_BAD_JSON"


class NotFound(QueryError):
    status = 404
    errcode = "M_NOT_FOUND"


class Forbidden(QueryError):
    status = 403
    errcode = "M_FORBIDDEN"


class Conflict(QueryError):
    status = 409
    errcode = "M_ROOM_IN_USE"
