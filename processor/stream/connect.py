"""Starting Kafka clients with one-line errors an operator can act on.

aiokafka reports a failed bootstrap as `KafkaConnectionError("Unable to bootstrap from
[...]")` and logs the actual cause (connection refused, certificate verify failed, SASL
authentication failed) as a separate ERROR record (logger `aiokafka`). `start_client`
catches that record while the client starts, drops it, and raises `KafkaUnavailable` with
the cause in its message: the operator reads one line that says what is wrong.

A broker that never answers (a firewall dropping packets, or a TLS listener spoken to in
plain text, which waits for bytes that never come) would hold a start for aiokafka's
request timeout (40 s) per attempt; `CONNECT_TIMEOUT_SECONDS` bounds the whole start.
"""

from __future__ import annotations

import asyncio
import functools
import logging
from collections.abc import Callable, Coroutine
from typing import Any, ParamSpec, Protocol, TypeVar

from aiokafka.errors import KafkaError

from processor.config import Settings
from processor.errors import KafkaUnavailable

#: How long a command waits for the brokers' first answer before it gives up.
CONNECT_TIMEOUT_SECONDS = 10.0

#: aiokafka.client's messages for a bootstrap address that failed; their last argument is
#: the error.
_BOOTSTRAP_FAILURES = ("Unable connect to", "Unable to request metadata from")


class _Startable(Protocol):
    async def start(self) -> Any: ...


class _BootstrapCauses(logging.Filter):
    """Keeps (and hides) aiokafka's per-address bootstrap errors during a start."""

    def __init__(self) -> None:
        super().__init__()
        self.causes: list[str] = []

    def filter(self, record: logging.LogRecord) -> bool:
        if isinstance(record.msg, str) and record.msg.startswith(_BOOTSTRAP_FAILURES):
            args = record.args if isinstance(record.args, tuple) else ()
            self.causes.append(str(args[-1]) if args else record.getMessage())
            return False
        return True


def _hint(settings: Settings, cause: str) -> str:
    """What to check, for the usual causes."""
    if "CERTIFICATE_VERIFY_FAILED" in cause:
        return " (is KAFKA_SSL_CAFILE the CA that signed the brokers' certificates?)"
    if "SaslAuthenticationFailed" in cause:
        return " (check KAFKA_SASL_USERNAME, KAFKA_SASL_PASSWORD and KAFKA_SASL_MECHANISM)"
    if settings.kafka_security_protocol == "PLAINTEXT" and "Connect call failed" not in cause:
        return " (if the brokers require TLS or SASL, set KAFKA_SECURITY_PROTOCOL)"
    return ""


async def start_client(client: _Startable, settings: Settings) -> None:
    """`await client.start()`, failing with `KafkaUnavailable` within
    `CONNECT_TIMEOUT_SECONDS`. The caller still closes the client (it may be half started).
    """
    causes = _BootstrapCauses()
    logger = logging.getLogger("aiokafka")  # aiokafka/client.py logs as "aiokafka"
    logger.addFilter(causes)
    servers = settings.kafka_bootstrap_servers
    try:
        await asyncio.wait_for(client.start(), CONNECT_TIMEOUT_SECONDS)
    except TimeoutError:
        cause = _one_line(causes.causes[-1]) if causes.causes else ""
        raise KafkaUnavailable(
            f"no answer from Kafka at {servers} within {CONNECT_TIMEOUT_SECONDS:g} s"
            f"{': ' + cause if cause else ''}{_hint(settings, cause)}"
        ) from None
    except KafkaError as e:
        cause = _one_line(causes.causes[-1] if causes.causes else str(e))
        raise KafkaUnavailable(
            f"cannot connect to Kafka at {servers}: {cause}{_hint(settings, cause)}"
        ) from None
    finally:
        logger.removeFilter(causes)


def _one_line(text: str) -> str:
    return " ".join(text.split())


P = ParamSpec("P")
T = TypeVar("T")


def kafka_failures_in_one_line(
    command: Callable[P, Coroutine[Any, Any, T]],
) -> Callable[P, Coroutine[Any, Any, T]]:
    """A command whose stray `KafkaError` (a request the brokers refused after the start:
    not authorised, a topic deleted meanwhile...) ends it as `KafkaUnavailable`, one line,
    like the failures `start_client` reports."""

    @functools.wraps(command)
    async def wrapper(*args: P.args, **kwargs: P.kwargs) -> T:
        try:
            return await command(*args, **kwargs)
        except KafkaError as e:
            raise KafkaUnavailable(f"a Kafka request failed: {_one_line(str(e))}") from e

    return wrapper


#: Pause before retrying after a transient failure (database or broker unavailable).
RETRY_SECONDS = 1.0
