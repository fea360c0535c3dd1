"""The compose stack (deploy/compose) is valid Compose and its parts fit together.

Validated with check-jsonschema's built-in copy of the Compose specification's schema (no
Docker engine in CI). What the schema cannot see is checked here: files it mounts and builds
from exist, the environment names real settings, Prometheus scrapes every `run` instance on
its metrics port, Grafana's provisioning finds the dashboard, and the demo's command line
parses with the real CLI.
"""

from __future__ import annotations

import shlex
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from processor.cli import build_parser
from processor.config import SETTINGS
from tests.unit.deploy.tools import tool

ROOT = Path(__file__).resolve().parents[3]
COMPOSE_DIR = ROOT / "deploy" / "compose"
COMPOSE = COMPOSE_DIR / "compose.yaml"


def load() -> dict[str, Any]:
    data: dict[str, Any] = yaml.safe_load(COMPOSE.read_text())
    return data


def services() -> dict[str, Any]:
    found: dict[str, Any] = load()["services"]
    return found


def roomservers() -> dict[str, Any]:
    """The services built from the roomserver image, by name."""
    return {name: s for name, s in services().items() if "build" in s}


def check_compose(path: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(tool("check-jsonschema")), "--builtin-schema", "vendor.compose-spec", str(path)],
        capture_output=True, text=True, check=False,
    )


def test_valid_against_the_compose_specification() -> None:
    result = check_compose(COMPOSE)
    assert result.returncode == 0, result.stdout + result.stderr


def test_the_schema_check_rejects_what_compose_would(tmp_path: Path) -> None:
    broken = tmp_path / "compose.yaml"
    broken.write_text(COMPOSE.read_text().replace("depends_on:", "depend_on:", 1))
    result = check_compose(broken)
    assert result.returncode == 1
    assert "depend_on" in result.stdout


def test_mounted_and_built_files_exist() -> None:
    for name, service in services().items():
        for volume in service.get("volumes", []):
            source = volume.split(":")[0]
            assert source.startswith("."), f"{name}: {volume} is not a bind mount"
            assert (COMPOSE_DIR / source).exists(), f"{name}: {source}"
        if "build" in service:
            context = COMPOSE_DIR / service["build"]["context"]
            assert (context / service["build"]["dockerfile"]).is_file(), name
            assert (context / ".dockerignore").is_file(), name


def test_pulled_images_are_pinned() -> None:
    """Images pulled from a registry name a version (the roomserver's own is built here)."""
    for name, service in services().items():
        if "build" in service:
            continue
        image = service["image"]
        tag = image.rpartition(":")[2]
        assert ":" in image and tag != "latest" and any(c.isdigit() for c in tag), name


def test_environment_names_real_settings() -> None:
    known = {setting.env for setting in SETTINGS}
    for name, service in roomservers().items():
        assert set(service["environment"]) <= known, name


def run_instances() -> dict[str, Any]:
    return {name: s for name, s in roomservers().items() if s.get("command") == ["run"]}


def test_two_run_instances_in_one_consumer_group() -> None:
    instances = run_instances()
    assert len(instances) == 2
    groups = {s["environment"].get("ROOMSERVER_CONSUMER_GROUP", "") for s in instances.values()}
    assert len(groups) == 1
    partitions = {s["environment"]["ROOMSERVER_INPUT_PARTITIONS"] for s in instances.values()}
    assert all(int(p) >= len(instances) for p in partitions)


def test_prometheus_scrapes_every_run_instance() -> None:
    config = yaml.safe_load((COMPOSE_DIR / "prometheus.yml").read_text())
    (job,) = config["scrape_configs"]
    (static,) = job["static_configs"]
    expected = {
        f"{name}:{s['environment']['ROOMSERVER_METRICS_PORT']}"
        for name, s in run_instances().items()
    }
    assert set(static["targets"]) == expected
    mounts = [v.split(":") for v in services()["prometheus"]["volumes"]]
    assert ["./prometheus.yml", "/etc/prometheus/prometheus.yml", "ro"] in mounts


def test_grafana_provisions_the_dashboard_and_datasource() -> None:
    grafana = services()["grafana"]
    mounts = {
        target: COMPOSE_DIR / source
        for source, target, *_ in (v.split(":") for v in grafana["volumes"])
    }
    provisioning = mounts["/etc/grafana/provisioning"]
    provider = yaml.safe_load((provisioning / "dashboards" / "roomserver.yaml").read_text())
    dashboards = mounts[provider["providers"][0]["options"]["path"]]
    assert (dashboards / "roomserver.json").is_file()
    home = grafana["environment"]["GF_DASHBOARDS_DEFAULT_HOME_DASHBOARD_PATH"]
    home_dir, _, home_file = home.rpartition("/")
    assert (mounts[home_dir] / home_file).is_file()
    datasources = yaml.safe_load((provisioning / "datasources" / "prometheus.yaml").read_text())
    (prometheus,) = datasources["datasources"]
    assert prometheus["url"] == "http://prometheus:9090"
    assert "127.0.0.1:9090:9090" in services()["prometheus"]["ports"]


def test_demo_traffic_parses_with_the_real_cli() -> None:
    demo = services()["demo-traffic"]
    assert demo["entrypoint"][:3] == ["bash", "-o", "pipefail"]
    (script,) = demo["command"]
    commands = [shlex.split(part) for part in script.split("|")]
    assert [argv[:2] for argv in commands] == [
        ["roomserver", "generate"],
        ["roomserver", "produce"],
    ]
    parser = build_parser()
    for argv in commands:
        args = parser.parse_args(argv[1:])
        assert args.command == argv[1]
    assert parser.parse_args(commands[1][1:]).file == "-"
    # It produces; it is no service: no port, no health check, never restarted.
    assert demo["environment"]["ROOMSERVER_METRICS_PORT"] == "0"
    assert demo["healthcheck"] == {"disable": True}
    assert demo["restart"] == "no"


@pytest.mark.parametrize("name", ["kafka", "postgres"])
def test_roomservers_wait_for_healthy_services(name: str) -> None:
    assert "healthcheck" in services()[name]
    for service_name, service in run_instances().items():
        assert service["depends_on"][name] == {"condition": "service_healthy"}, service_name


def test_query_api_serves_the_same_database_on_a_published_port() -> None:
    query = roomservers()["query"]
    args = build_parser().parse_args(query["command"])
    assert args.command == "serve"
    env = query["environment"]
    assert env["DATABASE_URL"] == roomservers()["roomserver-1"]["environment"]["DATABASE_URL"]
    assert env["ROOMSERVER_QUERY_HOST"] == "0.0.0.0"
    port = env["ROOMSERVER_QUERY_PORT"]
    assert f"127.0.0.1:{port}:{port}" in query["ports"]
    # The image's health check asks /health on ROOMSERVER_METRICS_PORT: serve's own port.
    assert env["ROOMSERVER_METRICS_PORT"] == port
