"""deploy/kubernetes: valid against Kubernetes' own JSON schemas (bundled by kubernetes-validate, so
offline), and consistent with the app and the Dockerfile where no schema can tell: probe paths are
routes, the port is the one the image serves on, the user is the image's, settings are real ones.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import yaml
from kubernetes_validate import utils as kubernetes_validate

from app.main import create_app
from app.settings import Settings

ROOT = Path(__file__).resolve().parents[2]
MANIFESTS = sorted((ROOT / "deploy" / "kubernetes").glob("*.yaml"))
# The oldest Kubernetes release still commonly run, and the newest the package knows.
KUBERNETES_VERSIONS = ("1.30", kubernetes_validate.latest_version())
DOCKERFILE = (ROOT / "Dockerfile").read_text()


@pytest.fixture(scope="module")
def manifests() -> dict[str, dict]:
    """Each resource by its kind."""
    loaded = [doc for path in MANIFESTS for doc in yaml.safe_load_all(path.read_text()) if doc]
    return {doc["kind"]: doc for doc in loaded}


@pytest.fixture(scope="module")
def container(manifests) -> dict:
    (only,) = manifests["Deployment"]["spec"]["template"]["spec"]["containers"]
    return only


def test_the_expected_manifests_exist(manifests):
    assert {path.name for path in MANIFESTS} == {"deployment.yaml", "service.yaml", "hpa.yaml", "pdb.yaml"}
    assert set(manifests) == {"Deployment", "Service", "HorizontalPodAutoscaler", "PodDisruptionBudget"}
    assert manifests["HorizontalPodAutoscaler"]["apiVersion"] == "autoscaling/v2"
    assert manifests["PodDisruptionBudget"]["apiVersion"] == "policy/v1"


@pytest.mark.parametrize("version", KUBERNETES_VERSIONS)
@pytest.mark.parametrize("kind", ["Deployment", "Service", "HorizontalPodAutoscaler", "PodDisruptionBudget"])
def test_valid_against_the_kubernetes_schema(manifests, kind, version):
    """Strict: an unknown or misspelt field fails too, not only a wrong type."""
    kubernetes_validate.validate(manifests[kind], version, strict=True)


def test_probes_use_the_health_routes(container):
    routes = set(create_app(Settings()).openapi()["paths"])
    probes = {name: container[name]["httpGet"] for name in ("startupProbe", "livenessProbe", "readinessProbe")}
    assert {name: probe["path"] for name, probe in probes.items()} == {
        "startupProbe": "/health/ready",  # a load that never finishes gets the container restarted
        "livenessProbe": "/health/live",
        "readinessProbe": "/health/ready",
    }
    assert {probe["path"] for probe in probes.values()} <= routes
    assert {probe["port"] for probe in probes.values()} == {"http"}


def test_port_is_the_one_the_image_serves_on(manifests, container):
    exposed = re.search(r"^EXPOSE (\d+)$", DOCKERFILE, re.MULTILINE)
    served = re.search(r"^CMD .*--port (\d+)", DOCKERFILE, re.MULTILINE)
    assert exposed and served and exposed[1] == served[1]
    assert container["ports"] == [{"name": "http", "containerPort": int(exposed[1])}]
    (service_port,) = manifests["Service"]["spec"]["ports"]
    assert service_port["targetPort"] == "http"


def test_runs_as_the_images_user_with_a_read_only_root(manifests, container):
    pod = manifests["Deployment"]["spec"]["template"]["spec"]
    user = re.search(r"^USER (\d+)$", DOCKERFILE, re.MULTILINE)
    assert user and pod["securityContext"]["runAsUser"] == int(user[1])
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert container["securityContext"] == {
        "allowPrivilegeEscalation": False,
        "readOnlyRootFilesystem": True,
        "capabilities": {"drop": ["ALL"]},
    }
    volumes = {volume["name"]: volume for volume in pod["volumes"]}
    (tmp,) = [mount for mount in container["volumeMounts"] if mount["mountPath"] == "/tmp"]
    assert "emptyDir" in volumes[tmp["name"]]


def test_environment_names_real_settings(container):
    """A misspelt FACEVER_ variable would be silently ignored by the service."""
    names = {variable["name"] for variable in container["env"]}
    assert names and all(name.startswith("FACEVER_") for name in names)
    assert {name.removeprefix("FACEVER_").lower() for name in names} <= set(Settings.model_fields)


def test_resource_requests_within_limits_and_inference_threads_within_cpu(container):
    resources = container["resources"]
    assert set(resources["requests"]) == set(resources["limits"]) == {"cpu", "memory"}
    assert quantity(resources["requests"]["memory"]) <= quantity(resources["limits"]["memory"])
    assert quantity(resources["requests"]["cpu"]) <= quantity(resources["limits"]["cpu"])
    env = {variable["name"]: variable.get("value") for variable in container["env"]}
    assert int(env["FACEVER_INFERENCE_THREADS"]) <= quantity(resources["limits"]["cpu"])


def test_shutdown_outlasts_a_request(manifests, container):
    """The grace period covers the preStop pause plus a request's whole deadline."""
    pod = manifests["Deployment"]["spec"]["template"]["spec"]
    pause = int(container["lifecycle"]["preStop"]["exec"]["command"][1])
    assert pod["terminationGracePeriodSeconds"] > pause + Settings.model_fields["request_timeout_s"].default


def test_selectors_and_targets_match_the_pods(manifests):
    labels = manifests["Deployment"]["spec"]["template"]["metadata"]["labels"]
    assert manifests["Deployment"]["spec"]["selector"]["matchLabels"] == labels
    assert manifests["Service"]["spec"]["selector"] == labels
    assert manifests["PodDisruptionBudget"]["spec"]["selector"]["matchLabels"] == labels
    target = manifests["HorizontalPodAutoscaler"]["spec"]["scaleTargetRef"]
    assert (target["kind"], target["name"]) == ("Deployment", manifests["Deployment"]["metadata"]["name"])
    assert (
        manifests["PodDisruptionBudget"]["spec"]["minAvailable"]
        < manifests["HorizontalPodAutoscaler"]["spec"]["minReplicas"]
    )


SUFFIXES = {"": 1, "m": 1e-3, "k": 1e3, "M": 1e6, "G": 1e9, "Ki": 2**10, "Mi": 2**20, "Gi": 2**30, "Ti": 2**40}


def quantity(text: str) -> float:
    """A Kubernetes resource quantity ("500m", "2", "1Gi") as a number; the schema accepts any string."""
    match = re.fullmatch(r"([0-9]+(?:\.[0-9]+)?)([A-Za-z]*)", str(text))
    assert match and match[2] in SUFFIXES, f"not a resource quantity: {text!r}"
    return float(match[1]) * SUFFIXES[match[2]]
