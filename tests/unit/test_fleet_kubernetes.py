"""docker/kubernetes/: valid against the Kubernetes schemas, and true to the code and the SPEC.

There is no cluster here: the manifests are validated with ``kubernetes-validate`` (the API's
own OpenAPI schemas, strict: unknown fields are errors) and their contract is checked field by
field against setup.cfg, the Dockerfile and the settings the servers read.
"""

from __future__ import annotations

import configparser
import re
from pathlib import Path
from typing import Any

import pytest

from mcp_tenants.settings import RedisSettings, Settings

yaml = pytest.importorskip("yaml", reason="PyYAML is in the test extra")
kubernetes_validate = pytest.importorskip("kubernetes_validate", reason="kubernetes-validate is in the test extra")

ROOT = Path(__file__).resolve().parents[2]
KUBE = ROOT / "docker" / "kubernetes"
#: Oldest Kubernetes release still supported upstream when this was written, and the newest known.
VERSIONS = ("1.31.0", kubernetes_validate.latest_version())
SERVERS = {"mcp-postgres-server": "0", "mcp-minio-server": "1"}  # Deployment name: Redis DB (SPEC)
SECRET_VARIABLES = {"MCP_AUTH_TOKEN", "MCP_TENANT_ENCRYPTION_KEY", "REDIS_PASSWORD", "REDIS_SENTINEL_PASSWORD"}


def kustomization() -> dict[str, Any]:
    return yaml.safe_load((KUBE / "kustomization.yaml").read_text())


def resources() -> list[dict[str, Any]]:
    """Every object the kustomization lists, in order."""
    docs: list[dict[str, Any]] = []
    for name in kustomization()["resources"]:
        docs += [doc for doc in yaml.safe_load_all((KUBE / name).read_text()) if doc]
    return docs


def objects(kind: str) -> dict[str, dict[str, Any]]:
    return {doc["metadata"]["name"]: doc for doc in resources() if doc["kind"] == kind}


def container(name: str) -> dict[str, Any]:
    (only,) = objects("Deployment")[name]["spec"]["template"]["spec"]["containers"]
    return only


def config_map() -> dict[str, str]:
    return objects("ConfigMap")["mcp-tenants"]["data"]


def environment(name: str) -> dict[str, str]:
    """What the server process sees: the ConfigMap, then the container's literal values."""
    env = dict(config_map())
    env.update({e["name"]: e["value"] for e in container(name)["env"] if "value" in e})
    return env


@pytest.mark.parametrize("version", VERSIONS)
def test_every_manifest_is_valid_for_kubernetes(version: str) -> None:
    docs = resources()
    assert {doc["kind"] for doc in docs} == {
        "ConfigMap",
        "Deployment",
        "Service",
        "PodDisruptionBudget",
        "HorizontalPodAutoscaler",
    }
    for doc in docs:
        kubernetes_validate.validate(doc, version, strict=True)


def test_the_kustomization_lists_every_manifest_in_the_folder() -> None:
    listed = set(kustomization()["resources"])
    assert listed == {p.name for p in KUBE.glob("*.yaml")} - {"kustomization.yaml"}
    assert [image["name"] for image in kustomization()["images"]] == ["mcp-tenants"]


@pytest.mark.parametrize("name", sorted(SERVERS))
def test_each_server_runs_its_console_script_on_its_redis_db(name: str) -> None:
    parser = configparser.ConfigParser()
    parser.read(ROOT / "setup.cfg")
    scripts = parser["options.entry_points"]["console_scripts"]
    assert container(name)["command"] == [name] and f"{name} =" in scripts
    assert container(name)["image"] == "mcp-tenants"
    env = environment(name)
    assert env["REDIS_DB"] == SERVERS[name]
    settings = Settings.from_env(name.split("-")[1], env)  # the servers accept this environment
    assert settings.transport == "streamable-http" and settings.redis.db == int(SERVERS[name])


@pytest.mark.parametrize("name", sorted(SERVERS))
def test_probes_and_ports_match_what_the_server_serves(name: str) -> None:
    spec = container(name)
    env = environment(name)
    ports = {p["name"]: p["containerPort"] for p in spec["ports"]}
    assert ports == {"mcp": int(env["MCP_PORT"]), "metrics": int(env["MCP_METRICS_PORT"])}
    assert spec["livenessProbe"]["httpGet"] == {"path": "/healthz", "port": "mcp"}
    assert spec["startupProbe"]["httpGet"] == {"path": "/healthz", "port": "mcp"}
    assert spec["readinessProbe"]["httpGet"] == {"path": "/readyz", "port": "mcp"}
    service = objects("Service")[name]["spec"]
    assert {(p["name"], p["port"], p["targetPort"]) for p in service["ports"]} == {
        ("mcp", ports["mcp"], "mcp"),
        ("metrics", ports["metrics"], "metrics"),
    }
    pod = objects("Deployment")[name]["spec"]["template"]
    assert pod["metadata"]["annotations"]["prometheus.io/port"] == str(ports["metrics"])
    # Draining ends well before Kubernetes would kill the pod.
    assert int(env["MCP_DRAIN_SECONDS"]) + 10 <= pod["spec"]["terminationGracePeriodSeconds"]


@pytest.mark.parametrize("name", sorted(SERVERS))
def test_selectors_tie_service_budget_and_autoscaler_to_the_deployment(name: str) -> None:
    deployment = objects("Deployment")[name]["spec"]
    labels = deployment["template"]["metadata"]["labels"]
    assert deployment["selector"]["matchLabels"].items() <= labels.items()
    assert objects("Service")[name]["spec"]["selector"].items() <= labels.items()
    assert objects("PodDisruptionBudget")[name]["spec"]["selector"]["matchLabels"].items() <= labels.items()
    hpa = objects("HorizontalPodAutoscaler")[name]["spec"]
    assert hpa["scaleTargetRef"] == {"apiVersion": "apps/v1", "kind": "Deployment", "name": name}
    # The budget never blocks every eviction: the autoscaler keeps more replicas than it protects.
    assert objects("PodDisruptionBudget")[name]["spec"]["minAvailable"] < hpa["minReplicas"]


@pytest.mark.parametrize("name", sorted(SERVERS))
def test_secrets_come_only_from_secrets(name: str) -> None:
    env = container(name)["env"]
    from_secret = {e["name"] for e in env if "secretKeyRef" in e.get("valueFrom", {})}
    assert from_secret == SECRET_VARIABLES
    literal = set(config_map()) | {e["name"] for e in env if "value" in e}
    assert not {v for v in literal if re.search("PASSWORD|TOKEN|SECRET|_KEY$", v)}


@pytest.mark.parametrize("name", sorted(SERVERS))
def test_pods_run_as_the_image_user_without_privileges(name: str) -> None:
    dockerfile = (ROOT / "docker" / "Dockerfile").read_text()
    user = re.search(r"^USER (\d+):(\d+)", dockerfile, re.MULTILINE)
    assert user is not None
    pod = objects("Deployment")[name]["spec"]["template"]["spec"]
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert (pod["securityContext"]["runAsUser"], pod["securityContext"]["runAsGroup"]) == tuple(
        int(x) for x in user.groups()
    )
    assert pod["automountServiceAccountToken"] is False
    context = container(name)["securityContext"]
    assert context["allowPrivilegeEscalation"] is False and context["readOnlyRootFilesystem"] is True
    assert context["capabilities"]["drop"] == ["ALL"]


def test_redis_is_reached_through_sentinel() -> None:
    settings = RedisSettings.from_env(config_map(), default_db=0)
    assert settings.sentinels and settings.sentinel_master


def test_every_variable_set_is_one_the_servers_read() -> None:
    source = "\n".join(p.read_text() for p in (ROOT / "mcp_tenants").rglob("*.py"))
    readme = (ROOT / "README.rst").read_text()
    for name in SERVERS:
        for variable in [*environment(name), *SECRET_VARIABLES]:
            assert f'"{variable}"' in source, f"{variable} is read nowhere in mcp_tenants/"
            assert variable in readme, f"{variable} is not documented in README.rst"
