"""deploy/kuberay.yaml: the fields the KubeRay operator (ray.io/v1 RayCluster) requires, and a
gateway Deployment that can reach the cluster it names."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import ray
import yaml

MANIFEST = Path(__file__).resolve().parents[2] / "deploy" / "kuberay.yaml"


def _docs() -> dict[str, dict[str, Any]]:
    return {d["kind"]: d for d in yaml.safe_load_all(MANIFEST.read_text()) if d}


def _containers(template: dict[str, Any]) -> list[dict[str, Any]]:
    containers = template["spec"]["containers"]
    assert containers and all(c.get("name") and c.get("image") for c in containers)
    return list(containers)


def _string_params(params: dict[str, Any]) -> None:
    # KubeRay's CRD types rayStartParams as map[string]string: a bare number is refused.
    assert all(isinstance(k, str) and isinstance(v, str) for k, v in params.items()), params


def test_the_ray_cluster_has_what_kuberay_requires() -> None:
    cluster = _docs()["RayCluster"]
    assert cluster["apiVersion"] == "ray.io/v1" and cluster["metadata"]["name"]
    spec = cluster["spec"]
    assert spec["rayVersion"] == ray.__version__  # the image's Ray must be the drivers' Ray
    head = spec["headGroupSpec"]
    _string_params(head["rayStartParams"])
    assert head["rayStartParams"]["num-cpus"] == "0"  # no shard on the head
    json.loads(head["rayStartParams"]["system-config"])
    ports = {p["containerPort"] for c in _containers(head["template"]) for p in c["ports"]}
    assert {6379, 10001} <= ports
    groups = spec["workerGroupSpecs"]
    assert groups
    for group in groups:
        assert group["groupName"]
        assert 0 < group["minReplicas"] <= group["replicas"] <= group["maxReplicas"]
        _string_params(group["rayStartParams"])
        _containers(group["template"])


def test_the_gateway_is_a_deployment_of_its_own_pointed_at_the_head() -> None:
    docs = _docs()
    cluster, gateway, service = docs["RayCluster"], docs["Deployment"], docs["Service"]
    spec = gateway["spec"]
    labels = spec["template"]["metadata"]["labels"]
    assert spec["selector"]["matchLabels"].items() <= labels.items()
    assert service["spec"]["selector"].items() <= labels.items()
    [container] = _containers(spec["template"])
    env = {e["name"]: e["value"] for e in container["env"]}
    # KubeRay names the head's Service <cluster>-head-svc
    assert env["RAY_ADDRESS"] == f"{cluster['metadata']['name']}-head-svc:6379"
    assert env["HL_HOST"] == "0.0.0.0" and env["HL_SHARD_DIRECT_HOST"] == "0.0.0.0"
    assert container["readinessProbe"]["httpGet"]["path"] == "/readyz"
    assert container["command"][:2] == ["hyperlocal", "up"]
