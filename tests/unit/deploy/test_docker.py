"""The container image (deploy/docker): hadolint-clean, buildable from its trimmed context,
and its health check answering for /health of the metrics port.

No Docker engine in CI, so the image is not built here: the checks are hadolint, the
Dockerfile read against .dockerignore and the package metadata, and the health check script
run against a real `serve_metrics` server.
"""

from __future__ import annotations

import asyncio
import json
import re
import subprocess
import sys
from pathlib import Path

import pytest

from processor.metrics import Health, Metrics, serve_metrics
from tests.fixtures.services import free_port
from tests.unit.deploy.dockerfile import DOCKERFILE, instructions
from tests.unit.deploy.tools import tool

ROOT = Path(__file__).resolve().parents[3]
HEALTHCHECK = ROOT / "deploy" / "docker" / "healthcheck.py"


def test_hadolint_finds_nothing() -> None:
    """Every rule, info level included: nothing to ignore."""
    result = subprocess.run(
        [str(tool("hadolint")), "--no-color", "--format", "json", str(DOCKERFILE)],
        capture_output=True, text=True, check=False,
    )
    assert result.stderr == ""
    assert json.loads(result.stdout) == []
    assert result.returncode == 0


def test_hadolint_is_really_checking(tmp_path: Path) -> None:
    """The same invocation on a Dockerfile with known faults reports them."""
    bad = tmp_path / "Dockerfile"
    bad.write_text("FROM python:latest\nRUN apt-get install -y curl\n")
    result = subprocess.run(
        [str(tool("hadolint")), "--no-color", "--format", "json", str(bad)],
        capture_output=True, text=True, check=False,
    )
    codes = {finding["code"] for finding in json.loads(result.stdout)}
    assert {"DL3007", "DL3008"} <= codes  # the :latest tag; an unpinned apt package
    assert result.returncode != 0


def test_bases_pinned_non_root_user_and_one_entrypoint() -> None:
    found = instructions()
    bases = [args.split()[0] for keyword, args in found if keyword == "FROM"]
    assert len(bases) == 2, "multi-stage: a build stage and the runtime"
    assert len(set(bases)) == 1, "both stages on the same interpreter (the venv is copied)"
    assert re.fullmatch(r"python:3\.\d+\.\d+-slim-[a-z]+", bases[0]), bases[0]
    (user,) = [args for keyword, args in found if keyword == "USER"]
    uid = user.split(":")[0]
    # Numeric so that Kubernetes' runAsNonRoot can check it; and not root.
    assert uid.isdigit() and int(uid) != 0
    (entrypoint,) = [args for keyword, args in found if keyword == "ENTRYPOINT"]
    assert json.loads(entrypoint) == ["roomserver"]
    (cmd,) = [args for keyword, args in found if keyword == "CMD"]
    assert json.loads(cmd) == ["run"]


def test_healthcheck_port_is_the_exposed_metrics_port() -> None:
    found = instructions()
    env = " ".join(args for keyword, args in found if keyword == "ENV")
    port = re.search(r"ROOMSERVER_METRICS_PORT=(\d+)", env)
    assert port is not None
    (exposed,) = [args for keyword, args in found if keyword == "EXPOSE"]
    assert exposed == port[1]
    (check,) = [args for keyword, args in found if keyword == "HEALTHCHECK"]
    command = json.loads(check.split(" CMD ", 1)[1])
    copied = [args.split() for keyword, args in found if keyword == "COPY"]
    assert any(
        parts[-1] == command[-1] and parts[-2] == "deploy/docker/healthcheck.py"
        for parts in copied
    ), "the HEALTHCHECK runs the script the Dockerfile copies"


def test_every_copy_source_is_in_the_build_context() -> None:
    """.dockerignore lets through only what is listed: a COPY of anything else fails the
    build. Each source must exist and be let through."""
    ignore = [line.strip() for line in (ROOT / ".dockerignore").read_text().splitlines()]
    rules = [line for line in ignore if line and not line.startswith("#")]
    assert rules[0] == "*", "an allow-list: everything else stays out of the context"
    allowed = [rule[1:].rstrip("/") for rule in rules if rule.startswith("!")]
    sources = []
    for keyword, args in instructions():
        if keyword == "COPY" and not args.startswith("--from"):
            sources += args.split()[:-1]
    assert sources
    for source in sources:
        assert (ROOT / source).exists(), source
        assert any(source == a or source.startswith(a + "/") for a in allowed), source
    # What `pip install .` reads besides the packages: pyproject's readme.
    assert "README.md" in sources and "pyproject.toml" in sources


async def run_healthcheck(port: str | None) -> tuple[int, str]:
    env = {"PATH": "/usr/bin:/bin"}
    if port is not None:
        env["ROOMSERVER_METRICS_PORT"] = port
    process = await asyncio.create_subprocess_exec(
        sys.executable, str(HEALTHCHECK), env=env,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT,
    )
    output, _ = await process.communicate()
    assert process.returncode is not None
    return process.returncode, output.decode()


class FakeClock:
    now = 100.0

    def __call__(self) -> float:
        return self.now


async def test_healthcheck_follows_the_health_endpoint() -> None:
    clock = FakeClock()
    health = Health(stall_seconds=5.0, clock=clock)
    port = free_port()
    server = await serve_metrics(port, Metrics(), health.report)
    try:
        code, output = await run_healthcheck(str(port))
        assert code == 0 and output.startswith("/health 200: ")
        assert json.loads(output.partition(": ")[2])["status"] == "ok"
        health.set_lag(7)
        clock.now += 6  # input waiting and no progress for longer than stall_seconds
        code, output = await run_healthcheck(str(port))
        assert (code, output.split(":")[0]) == (1, "/health 503")
        health.progressed()
        assert (await run_healthcheck(str(port)))[0] == 0
    finally:
        server.close()
        await server.wait_closed()
    code, output = await run_healthcheck(str(port))  # nothing listens any more
    assert code == 1 and "refused" in output.lower()


@pytest.mark.parametrize("port", [None, "0", ""])
async def test_healthcheck_passes_when_the_endpoint_is_off(port: str | None) -> None:
    """produce, tail, generate serve no /health: their containers are not unhealthy."""
    code, output = await run_healthcheck(port)
    assert (code, output) == (0, "ROOMSERVER_METRICS_PORT is 0: no /health endpoint to check\n")


async def test_healthcheck_rejects_a_malformed_port() -> None:
    assert (await run_healthcheck("metrics"))[0] == 1


async def test_metrics_listen_on_every_interface() -> None:
    """Prometheus in another container and the kubelet's probes (at the pod IP) connect
    from outside the loopback interface."""
    server = await serve_metrics(0, Metrics(), Health(stall_seconds=5.0).report)
    try:
        assert [s.getsockname()[0] for s in server.sockets] == ["0.0.0.0"]
    finally:
        server.close()
        await server.wait_closed()
