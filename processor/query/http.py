"""`roomserver serve`: the query API over HTTP, a Litestar application run by uvicorn.

Litestar because it decodes and encodes msgspec Structs natively (the `schemas.query` types
are the handlers' parameter and return types, validated by msgspec, no second model layer)
and generates the OpenAPI document (`/openapi.json`) from those same Structs.

Routes: ``POST /query/<name>`` and ``POST /alias/<action>`` (one per `schemas.query.ENDPOINTS`
entry), ``GET /query/supported_room_versions``, ``GET /health``, ``GET /metrics``
(Prometheus), ``GET /openapi.json``. Every error is Matrix-shaped JSON; a request the
server cannot parse is a 400 naming the field, never a 500.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Annotated, Any

import msgspec
from litestar import Litestar, Request, Response, get, post
from litestar.enums import RequestEncodingType
from litestar.exceptions import HTTPException, ValidationException
from litestar.handlers import HTTPRouteHandler
from litestar.openapi import OpenAPIConfig
from litestar.openapi.plugins import JsonRenderPlugin
from litestar.params import Body
from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Histogram,
    generate_latest,
)

from processor import __version__
from processor.errors import ConfigError, StorageError
from processor.query.engine import QueryEngine
from processor.query.errors import QueryError
from schemas import query as q

log = logging.getLogger(__name__)

__all__ = ["QueryMetrics", "build_app"]

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]


class QueryMetrics:
    """Requests by endpoint and status, and their latency, in a registry of their own."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.requests = Counter(
            "roomserver_query_requests",
            "Query API requests by endpoint and HTTP status",
            ["endpoint", "status"],
            registry=self.registry,
        )
        self.latency = Histogram(
            "roomserver_query_request_seconds",
            "Query API request latency (seconds) by endpoint",
            ["endpoint"],
            buckets=(0.001, 0.0025, 0.005, 0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1.0, 2.5, 10.0),
            registry=self.registry,
        )


def _metrics_middleware(app: Any, metrics: QueryMetrics, known: frozenset[str]) -> ASGIApp:
    async def wrapped(scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await app(scope, receive, send)
            return
        path = scope.get("path", "")
        # Unknown paths share one label: a scanner must not create a series per URL.
        endpoint = path if path in known else "other"
        status = 500
        started = time.perf_counter()

        async def capture(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await app(scope, receive, capture)
        finally:
            metrics.latency.labels(endpoint).observe(time.perf_counter() - started)
            metrics.requests.labels(endpoint, str(status)).inc()

    return wrapped


def _error(status: int, errcode: str, message: str) -> Response[bytes]:
    body = msgspec.json.encode(q.QueryErrorBody(errcode=errcode, error=message))
    return Response(body, status_code=status, media_type="application/json")


def _query_error(_: Request[Any, Any, Any], exc: QueryError) -> Response[bytes]:
    return _error(exc.status, exc.errcode, exc.message)


def _validation_error(_: Request[Any, Any, Any], exc: ValidationException) -> Response[bytes]:
    # Litestar's detail says "Validation failed for POST /query/x"; msgspec's message in
    # `extra` names the field ("Expected `str`, got `int` - at `$.room_id`").
    problems = []
    for item in exc.extra if isinstance(exc.extra, list) else []:
        if isinstance(item, dict):
            message = str(item.get("message", ""))
            key = item.get("key")
            # "data" is the handler's parameter (the whole body), not a field of it.
            if key and key != "data" and " - at `" not in message:
                message = f"{message} - at `$.{key}`"
            problems.append(message)
    text = "; ".join(p for p in problems if p) or exc.detail
    return _error(400, _bad_request_code(text), f"invalid request: {text}")


def _bad_request_code(text: str) -> str:
    """M_NOT_JSON for bytes that are not JSON at all (msgspec's words for it), M_BAD_JSON
    for JSON of the wrong shape."""
    not_json = ("JSON is malformed", "Input data was truncated", "trailing characters")
    return "M_NOT_JSON" if any(w in text for w in not_json) else "M_BAD_JSON"


def _http_error(_: Request[Any, Any, Any], exc: HTTPException) -> Response[bytes]:
    if exc.status_code in (404, 405):
        return _error(exc.status_code, "M_UNRECOGNIZED", f"unrecognized request: {exc.detail}")
    if exc.status_code == 413:
        return _error(413, "M_TOO_LARGE", "the request body is too large")
    if exc.status_code < 500:
        code = _bad_request_code(exc.detail) if exc.status_code == 400 else "M_BAD_JSON"
        return _error(exc.status_code, code, f"invalid request: {exc.detail}")
    return _error(exc.status_code, "M_UNKNOWN", exc.detail)


def _too_deep(_: Request[Any, Any, Any], exc: RecursionError) -> Response[bytes]:
    # msgspec's decoder raises RecursionError (not a DecodeError) for JSON nested deeper
    # than it recurses: the caller's mistake, not ours.
    return _error(400, "M_NOT_JSON", "the request body is nested too deeply")


def _not_utf8(_: Request[Any, Any, Any], exc: UnicodeDecodeError) -> Response[bytes]:
    # msgspec raises UnicodeDecodeError (not a DecodeError) for a string that is not UTF-8.
    return _error(400, "M_NOT_JSON", f"the request body is not UTF-8: {exc.reason}")


def _storage_error(_: Request[Any, Any, Any], exc: StorageError) -> Response[bytes]:
    log.warning("query failed on the database: %s", exc)
    return _error(503, "M_UNAVAILABLE", f"the database cannot answer now: {exc}")


def _config_error(_: Request[Any, Any, Any], exc: ConfigError) -> Response[bytes]:
    return _error(403, "M_FORBIDDEN", str(exc))


def _unexpected(_: Request[Any, Any, Any], exc: Exception) -> Response[bytes]:
    log.exception("query failed: %s", exc)
    return _error(500, "M_UNKNOWN", f"internal error ({type(exc).__name__}); see the log")


def _route(engine: QueryEngine, name: str, request_type: Any, response_type: Any) -> Any:
    """A POST handler for one endpoint, typed with its Structs (so Litestar decodes and
    validates the body with msgspec and documents both in the OpenAPI document)."""

    def handler(data: Any) -> Any:
        return engine.handle(name, data)

    handler.__annotations__ = {
        "data": Annotated[request_type, Body(media_type=RequestEncodingType.JSON)],
        "return": response_type,
    }
    handler.__name__ = "query_" + name.replace("/", "_")
    handler.__doc__ = (request_type.__doc__ or "").strip() or None
    return post(
        q.path_of(name),
        sync_to_thread=True,
        status_code=200,
        summary=name,
        tags=["alias" if name.startswith("alias/") else "query"],
    )(handler)


def build_app(engine: QueryEngine, metrics: QueryMetrics | None = None) -> ASGIApp:
    """The ASGI application: Litestar with the query routes, behind the metrics middleware."""
    metrics = metrics or QueryMetrics()
    handlers: list[HTTPRouteHandler] = []
    for name, (request_type, response_type) in q.ENDPOINTS.items():
        if request_type is not None:
            handlers.append(_route(engine, name, request_type, response_type))

    @get("/query/supported_room_versions", sync_to_thread=False, tags=["query"])
    def supported_room_versions() -> q.SupportedRoomVersionsResponse:
        """The room versions this roomserver implements, and the default for new rooms."""
        return engine.supported_room_versions()

    @get("/health", sync_to_thread=True, include_in_schema=False)
    def health() -> Response[bytes]:
        try:
            with engine.db.read() as tx:
                tx.rows("SELECT 1")
        except StorageError as e:
            return _error(503, "M_UNAVAILABLE", f"the database does not answer: {e}")
        return Response(b'{"status":"ok"}', media_type="application/json")

    @get("/metrics", sync_to_thread=False, include_in_schema=False)
    def prometheus() -> Response[bytes]:
        return Response(generate_latest(metrics.registry), media_type=CONTENT_TYPE_LATEST)

    app = Litestar(
        route_handlers=[*handlers, supported_room_versions, health, prometheus],
        exception_handlers={
            QueryError: _query_error,
            ValidationException: _validation_error,
            HTTPException: _http_error,
            RecursionError: _too_deep,
            UnicodeDecodeError: _not_utf8,
            StorageError: _storage_error,
            ConfigError: _config_error,
            Exception: _unexpected,
        },
        openapi_config=OpenAPIConfig(
            title="roomserver query API",
            version=__version__,
            path="/",
            render_plugins=[JsonRenderPlugin(path="/openapi.json")],
        ),
        logging_config=None,
    )
    known = frozenset(
        [q.path_of(n) for n in q.ENDPOINTS] + ["/health", "/metrics", "/openapi.json"]
    )
    return _metrics_middleware(app, metrics, known)
