"""The Kubernetes manifests (deploy/k8s) are valid for the API and wired to each other.

Each built-in resource is validated, strictly (no unknown fields), against the Kubernetes
OpenAPI schemas that `kubernetes-validate` bundles, for the oldest version the manifests
support and the newest the package knows. The ServiceMonitor is a CRD with no bundled schema:
its fields are checked here, as is what no schema sees — selectors matching the pods, probes
and Service on the container's metrics port, settings that exist, credentials only from the
Secret.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import kubernetes_validate
import pytest
import yaml

from processor.config import SETTINGS
from tests.unit.deploy.dockerfile import instructions

ROOT = Path(__file__).resolve().parents[3]
K8S = ROOT / "deploy" / "k8s"
#: The oldest Kubernetes the manifests are for (policy/v1 PDBs, batch/v1 TTL after finished,
#: sizeLimit on emptyDir all long stable by then); and the newest the package bundles.
VERSIONS = ("1.29.0", kubernetes_validate.latest_version())
#: Kinds defined by CRDs: no bundled schema, checked by their own tests below.
CRD_KINDS = frozenset({"ServiceMonitor"})
#: Settings that are credentials: from the Secret, never the ConfigMap.
CREDENTIALS = frozenset({"DATABASE_URL", "KAFKA_SASL_PASSWORD"})

Resource = dict[str, Any]


def documents(path: Path) -> list[Resource]:
    return [doc for doc in yaml.safe_load_all(path.read_text()) if doc is not None]


def manifests() -> dict[str, list[Resource]]:
    return {
        path.name: documents(path)
        for path in sorted(K8S.glob("*.yaml"))
        if path.name != "kustomization.yaml"
    }


def resource(kind: str, name: str | None = None) -> Resource:
    found = [
        doc
        for docs in manifests().values()
        for doc in docs
        if doc["kind"] == kind and (name is None or doc["metadata"]["name"] == name)
    ]
    assert len(found) == 1, f"{kind} {name or ''}: {len(found)} found"
    return found[0]


def container(workload: Resource) -> Resource:
    (only,) = workload["spec"]["template"]["spec"]["containers"]
    result: Resource = only
    return result


def selects(selector: dict[str, str], labels: dict[str, str]) -> bool:
    return all(labels.get(key) == value for key, value in selector.items())


@pytest.mark.parametrize("version", VERSIONS)
@pytest.mark.parametrize("name", sorted(manifests()))
def test_manifest_is_valid_for_kubernetes(name: str, version: str) -> None:
    docs = manifests()[name]
    assert docs, f"{name} holds no resource"
    for doc in docs:
        if doc["kind"] in CRD_KINDS:
            continue
        kubernetes_validate.validate(doc, version, strict=True)


def test_an_invalid_manifest_is_rejected() -> None:
    """The validation used above does reject what the API server would."""
    deployment = resource("Deployment", "roomserver")
    broken = {**deployment, "spec": {**deployment["spec"], "replica": 2}}  # a typo
    with pytest.raises(kubernetes_validate.ValidationError, match="replica"):
        kubernetes_validate.validate(broken, VERSIONS[0], strict=True)


def test_only_crd_kinds_lack_a_schema() -> None:
    """Skipping CRD_KINDS above hides nothing: a ServiceMonitor really has no bundled schema,
    and any other kind without one (a typo, a removed apiVersion) is an error, not a skip."""
    with pytest.raises(kubernetes_validate.SchemaNotFoundError):
        kubernetes_validate.validate(resource("ServiceMonitor"), VERSIONS[0], strict=True)
    budget = {**resource("PodDisruptionBudget"), "apiVersion": "policy/v1beta1"}
    with pytest.raises(kubernetes_validate.SchemaNotFoundError):
        kubernetes_validate.validate(budget, VERSIONS[0], strict=True)


def test_kustomization_lists_every_manifest_but_the_templates() -> None:
    kustomization = documents(K8S / "kustomization.yaml")[0]
    listed = set(kustomization["resources"])
    by_hand = {"secret.example.yaml", "rebuild-job.yaml"}
    assert listed == set(manifests()) - by_hand
    for image in kustomization["images"]:
        run = container(resource("Deployment", "roomserver"))
        assert image["name"] == run["image"].split(":")[0]


def test_servicemonitor_scrapes_the_metrics_service() -> None:
    monitor = resource("ServiceMonitor")
    service = resource("Service", "roomserver-metrics")
    assert monitor["apiVersion"] == "monitoring.coreos.com/v1"
    assert set(monitor["spec"]) <= {"selector", "endpoints", "namespaceSelector", "jobLabel"}
    assert selects(monitor["spec"]["selector"]["matchLabels"], service["metadata"]["labels"])
    port_names = {port["name"] for port in service["spec"]["ports"]}
    for endpoint in monitor["spec"]["endpoints"]:
        assert endpoint["port"] in port_names
        assert endpoint["path"] == "/metrics"
        assert re.fullmatch(r"\d+[smh]", endpoint["interval"])


def test_service_probes_and_settings_use_the_metrics_port() -> None:
    deployment = resource("Deployment", "roomserver")
    pod_labels = deployment["spec"]["template"]["metadata"]["labels"]
    main = container(deployment)
    ports = {port["name"]: port["containerPort"] for port in main["ports"]}
    config = resource("ConfigMap")["data"]
    assert ports["metrics"] == int(config["ROOMSERVER_METRICS_PORT"])

    service = resource("Service", "roomserver-metrics")
    assert selects(service["spec"]["selector"], pod_labels)
    assert [p["targetPort"] for p in service["spec"]["ports"]] == ["metrics"]

    for probe in ("startupProbe", "livenessProbe", "readinessProbe"):
        assert main[probe]["httpGet"] == {"path": "/health", "port": "metrics"}, probe
    # The liveness probe must not kill a pod before the service's own stall handling
    # (recreating the consumer after ROOMSERVER_STALL_SECONDS) has had its chance.
    liveness = main["livenessProbe"]
    assert liveness["periodSeconds"] * liveness["failureThreshold"] >= 60


def test_replicas_within_partitions_and_budget() -> None:
    deployment = resource("Deployment", "roomserver")
    config = resource("ConfigMap")["data"]
    replicas = deployment["spec"]["replicas"]
    assert 1 <= replicas <= int(config["ROOMSERVER_INPUT_PARTITIONS"])
    budget = resource("PodDisruptionBudget")
    assert budget["spec"]["selector"] == deployment["spec"]["selector"]
    assert budget["spec"]["maxUnavailable"] < replicas
    assert selects(
        deployment["spec"]["selector"]["matchLabels"],
        deployment["spec"]["template"]["metadata"]["labels"],
    )


def test_settings_exist_and_credentials_come_from_the_secret() -> None:
    known = {setting.env for setting in SETTINGS}
    config = resource("ConfigMap")
    assert set(config["data"]) <= known, set(config["data"]) - known
    assert not CREDENTIALS & set(config["data"])
    secret = resource("Secret")
    for workload in (resource("Deployment", "roomserver"), resource("Job")):
        main = container(workload)
        assert main["envFrom"] == [{"configMapRef": {"name": config["metadata"]["name"]}}]
        env = {entry["name"]: entry for entry in main["env"]}
        assert set(env) <= known
        assert set(env) == CREDENTIALS
        for entry in env.values():
            ref = entry["valueFrom"]["secretKeyRef"]
            assert ref["name"] == secret["metadata"]["name"]
            assert ref["key"] in secret["stringData"]


def test_pods_run_as_the_image_user_with_a_read_only_root() -> None:
    (user,) = [args for keyword, args in instructions() if keyword == "USER"]
    uid, gid = (int(part) for part in user.split(":"))
    deployment, job = resource("Deployment", "roomserver"), resource("Job")
    assert container(deployment)["image"] == container(job)["image"]
    for workload in (deployment, job):
        pod = workload["spec"]["template"]["spec"]
        assert pod["securityContext"]["runAsNonRoot"] is True
        assert (pod["securityContext"]["runAsUser"], pod["securityContext"]["runAsGroup"]) == (
            uid, gid,
        )
        assert container(workload)["securityContext"]["readOnlyRootFilesystem"] is True
        mounts = {mount["mountPath"] for mount in container(workload)["volumeMounts"]}
        assert "/tmp" in mounts


def test_rebuild_job_writes_to_another_database_once() -> None:
    job = resource("Job")
    assert container(job)["args"][0] == "rebuild"
    assert "--output-topic" not in container(job)["args"]
    def secret_keys(workload: Resource) -> dict[str, str]:
        return {
            entry["name"]: entry["valueFrom"]["secretKeyRef"]["key"]
            for entry in container(workload)["env"]
        }

    keys, live = secret_keys(job), secret_keys(resource("Deployment", "roomserver"))
    assert keys["DATABASE_URL"] != live["DATABASE_URL"]
    # A retry would meet the half-filled database, which rebuild refuses.
    assert job["spec"]["backoffLimit"] == 0
    assert job["spec"]["template"]["spec"]["restartPolicy"] == "Never"


def test_query_api_deployment_and_service() -> None:
    """`roomserver serve` (deploy/k8s/query.yaml): its own pods and Service on the port it
    listens on, probes on /health there, the database URL from the Secret, settings that
    exist, the same image and hardening as `run`."""
    query, run = resource("Deployment", "roomserver-query"), resource("Deployment", "roomserver")
    main = container(query)
    assert main["args"] == ["serve"]
    assert main["image"] == container(run)["image"]
    env = {entry["name"]: entry for entry in main["env"]}
    assert set(env) <= {setting.env for setting in SETTINGS}
    assert env["DATABASE_URL"] == container(run)["env"][0]
    assert env["ROOMSERVER_QUERY_HOST"]["value"] == "0.0.0.0"
    ports = {port["name"]: port["containerPort"] for port in main["ports"]}
    assert ports["http"] == int(env["ROOMSERVER_QUERY_PORT"]["value"])
    assert main["readinessProbe"]["httpGet"] == {"path": "/health", "port": "http"}
    pod_labels = query["spec"]["template"]["metadata"]["labels"]
    assert selects(query["spec"]["selector"]["matchLabels"], pod_labels)
    assert not selects(run["spec"]["selector"]["matchLabels"], pod_labels)
    service = resource("Service", "roomserver-query")
    assert selects(service["spec"]["selector"], pod_labels)
    assert [p["targetPort"] for p in service["spec"]["ports"]] == ["http"]
    pod = query["spec"]["template"]["spec"]
    assert pod["securityContext"] == run["spec"]["template"]["spec"]["securityContext"]
    assert main["securityContext"]["readOnlyRootFilesystem"] is True
