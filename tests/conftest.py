"""Shared test configuration: registers the fixture plugins in tests/fixtures/.

Fixtures available to every test (see each plugin's docstring):

- `kafka_bootstrap_servers` (session, str): a Kafka 4 broker's `host:port`.
- `postgres_url` (session, str): a superuser `postgresql://` URL of a PostgreSQL 15 server.
- `new_topic` (function): `new_topic(partitions=3, **configs) -> str`, a fresh topic.
- `kafka_admin` (session): a synchronous admin client (`KafkaAdmin`) for the broker.
- `database_url` (function, str): the URL of a fresh, empty database, dropped after the test.
- `secured_services` (session): a SASL_SSL Kafka broker and a TLS-only PostgreSQL (see
  tests/fixtures/secured.py); `secured_database` (function): a least-privilege database there.

Services start only when a test asks for them. A test that uses any of these fixtures is
marked `integration` automatically, so `pytest -m "not integration"` runs without services.
"""

from __future__ import annotations

import pytest

pytest_plugins = [
    "tests.fixtures.services",
    "tests.fixtures.kafka",
    "tests.fixtures.postgres",
    "tests.fixtures.secured",
]

SERVICE_FIXTURES = frozenset({"kafka_bootstrap_servers", "postgres_url", "secured_services"})


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if SERVICE_FIXTURES.intersection(getattr(item, "fixturenames", ())):
            item.add_marker(pytest.mark.integration)
