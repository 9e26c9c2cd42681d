"""The manifests under cluster/: each one validates offline as the API server would check it,
a broken one is refused with the path of the fault, every Ray container gets Serve's fast mode
and the secrets, the autoscaler has bounds, and every pod fits the nodes its pool launches."""

from __future__ import annotations

import copy
import json
import re
from dataclasses import dataclass

import pytest
import yaml

from tests.cluster.helpers import (
    CLUSTER,
    CRDS,
    ManifestError,
    all_docs,
    build,
    cluster_specs,
    describe,
    load_docs,
    pod_specs,
    ray_groups,
    validate,
)

needs_crds = pytest.mark.skipif(not CRDS.exists(), reason=f"KubeRay CRD schemas not at {CRDS}")
DOCS = list(all_docs())
RAY_DOCS = [d for _, d in DOCS if list(cluster_specs(d))]


def test_the_overlays_hold_what_they_should() -> None:
    kinds = {o: sorted(describe(d) for w, d in DOCS if w == f"overlays/{o}")
             for o in ("dev", "prod")}
    assert "RayCluster/warmstart" in kinds["dev"] and "RayCluster/warmstart" not in kinds["prod"]
    assert "Secret/warmstart-object-store" not in kinds["prod"]  # created out of band
    for overlay in kinds.values():
        assert {"RayService/warmstart", "Service/redis", "StatefulSet/redis",
                "ConfigMap/warmstart-storage", "RayJob/warmstart-train"} <= set(overlay)


@needs_crds
@pytest.mark.parametrize("where,doc", DOCS, ids=[f"{w}:{describe(d)}" for w, d in DOCS])
def test_every_manifest_validates(where: str, doc: dict) -> None:
    validate(doc)


@needs_crds
def test_the_dev_raycluster_file_validates_as_committed() -> None:
    for doc in load_docs(CLUSTER / "overlays" / "dev" / "ray-cluster.yaml"):
        validate(doc)


@needs_crds
@pytest.mark.parametrize("breakage,message", [
    (lambda c: c["spec"]["workerGroupSpecs"][1].pop("groupName"),
     "RayCluster/warmstart: spec.workerGroupSpecs[1]: 'groupName' is a required property"),
    (lambda c: c["spec"]["workerGroupSpecs"][0].update(maxReplicas="eight"),
     "RayCluster/warmstart: spec.workerGroupSpecs[0].maxReplicas: 'eight' is not of type "
     "'integer'"),
    (lambda c: c["spec"]["headGroupSpec"].update(rayStartParam={}),
     "RayCluster/warmstart: spec.headGroupSpec: Additional properties are not allowed "
     "('rayStartParam' was unexpected)"),
    (lambda c: c["spec"]["headGroupSpec"]["template"]["spec"]["containers"][0]["resources"]
     .update(request={"cpu": "1"}),
     "spec.headGroupSpec.template.spec.containers[0].resources: Additional properties are not "
     "allowed ('request' was unexpected)"),
])
def test_a_broken_raycluster_is_refused_naming_the_path(breakage, message: str) -> None:
    (cluster,) = load_docs(CLUSTER / "overlays" / "dev" / "ray-cluster.yaml")
    broken = copy.deepcopy(cluster)
    breakage(broken)
    with pytest.raises(ManifestError) as e:
        validate(broken)
    assert message in str(e.value)


def test_a_broken_builtin_manifest_is_refused_naming_the_path() -> None:
    service = next(d for d in load_docs(CLUSTER / "base" / "redis.yaml") if d["kind"] == "Service")
    service["spec"]["ports"][0]["port"] = "six-three-seven-nine"
    with pytest.raises(ManifestError, match=r"Service/redis: spec\.ports\[0\]\.port: "):
        validate(service)


def test_a_patch_that_matches_nothing_is_refused(tmp_path) -> None:
    (tmp_path / "kustomization.yaml").write_text(yaml.safe_dump({
        "resources": [str(CLUSTER / "base")],
        "patches": [{"target": {"kind": "RayService", "name": "nope"}, "patch": "[]"}]}))
    with pytest.raises(ManifestError, match="patch target RayService/nope"):
        build(tmp_path)


def test_kustomizations_name_files_that_exist() -> None:
    for k in CLUSTER.rglob("kustomization.yaml"):
        spec = yaml.safe_load(k.read_text())
        paths = spec.get("resources", []) + [p["path"] for p in spec.get("patches", [])
                                             if "path" in p]
        missing = [p for p in paths if not (k.parent / p).exists()]
        assert not missing, f"{k.relative_to(CLUSTER)} names missing {missing}"
    listed = {(k.parent / r).resolve() for k in CLUSTER.rglob("kustomization.yaml")
              for r in yaml.safe_load(k.read_text()).get("resources", [])}
    listed |= {(k.parent / p["path"]).resolve() for k in CLUSTER.rglob("kustomization.yaml")
               for p in yaml.safe_load(k.read_text()).get("patches", []) if "path" in p}
    unused = [str(p.relative_to(CLUSTER)) for p in CLUSTER.rglob("*.yaml")
              if p.name not in ("kustomization.yaml", "groups.yaml") and p.resolve() not in listed]
    assert not unused, f"manifests no kustomization applies: {unused}"


# --- what every Ray pod gets -------------------------------------------------------------------

SERVE_FAST = {"RAY_SERVE_ENABLE_HA_PROXY": "1", "RAY_SERVE_THROUGHPUT_OPTIMIZED": "1"}


@pytest.mark.parametrize("doc", RAY_DOCS, ids=describe)
def test_every_ray_container_has_serve_fast_mode_storage_and_secrets(doc: dict) -> None:
    for spec in cluster_specs(doc):
        for name, group in ray_groups(spec):
            ray = group["template"]["spec"]["containers"][0]  # KubeRay's Ray container is first
            env = {e["name"]: e.get("value") for e in ray.get("env", [])}
            assert SERVE_FAST.items() <= env.items(), f"{describe(doc)} {name}: {env}"
            sources = {(k, v["name"]) for f in ray.get("envFrom", []) for k, v in f.items()}
            assert {("configMapRef", "warmstart-storage"),
                    ("secretRef", "warmstart-object-store"),
                    ("secretRef", "warmstart-admin")} <= sources, f"{describe(doc)} {name}"


@pytest.mark.parametrize("doc", RAY_DOCS, ids=describe)
def test_autoscaler_v2_with_bounded_groups_and_token_auth(doc: dict) -> None:
    for spec in cluster_specs(doc):
        assert spec["authOptions"]["mode"] == "token", f"{describe(doc)}: job API open"
        assert spec["enableInTreeAutoscaling"] is True
        assert spec["autoscalerOptions"]["version"] == "v2"
        for name, group in list(ray_groups(spec))[1:]:
            lo, n, hi = group["minReplicas"], group.get("replicas", 0), group["maxReplicas"]
            assert 0 <= lo <= n <= hi <= 16, f"{describe(doc)} {name}: {lo} <= {n} <= {hi}"


def test_secrets_and_the_admin_token_are_named_as_the_app_reads_them() -> None:
    from serve.config import ADMIN_TOKEN_ENV

    secrets = {d["metadata"]["name"]: d for d in load_docs(CLUSTER / "base" / "secrets.yaml")}
    assert set(secrets["warmstart-admin"]["stringData"]) == {ADMIN_TOKEN_ENV}
    assert {"AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_DEFAULT_REGION"} <= set(
        secrets["warmstart-object-store"]["stringData"])


def test_redis_has_the_bloom_module_and_fsyncs_every_write() -> None:
    (redis,) = [d for d in load_docs(CLUSTER / "base" / "redis.yaml") if d["kind"] ==
                "StatefulSet"]
    (valkey,) = redis["spec"]["template"]["spec"]["containers"]
    assert re.match(r"valkey/valkey-bundle:|redis/redis-stack-server:", valkey["image"])
    assert "command" not in valkey, "the image's entrypoint loads the modules"
    args = " ".join(valkey["args"])
    assert "--appendonly yes" in args and "--appendfsync always" in args


# --- every pod fits its node pool --------------------------------------------------------------

@dataclass(frozen=True)
class Node:
    """An EC2 instance type as Kubernetes sees it: vCPUs, GiB, NVIDIA GPUs, Neuron chips."""

    cpu: float
    memory_gib: float
    gpus: int = 0
    neuron_chips: int = 0
    cores_per_chip: int = 0  # NeuronCores per chip: 2 on trn1 and inf2; 4 on trn2 (LNC=2)

    def allocatable(self) -> dict[str, float]:
        """Capacity less what the node keeps: Karpenter's 7.5% VM memory overhead, EKS's
        kube-reserved (CPU: 6% of the first core, 1% of the second, 0.5% of the next two,
        0.25% of the rest; memory: 255 MiB + 11 MiB per pod at 110 pods), the 100 MiB
        eviction threshold, and 0.5 CPU / 1 GiB for DaemonSets (CNI, kube-proxy, CSI, device
        plugins)."""
        c = self.cpu
        reserved_cpu = 0.06 + 0.01 * (c > 1) + 0.005 * min(max(c - 2, 0), 2) \
            + 0.0025 * max(c - 4, 0)
        reserved_gib = (255 + 11 * 110 + 100) / 1024
        return {"cpu": c - reserved_cpu - 0.5,
                "memory": self.memory_gib * 0.925 - reserved_gib - 1.0,
                "nvidia.com/gpu": self.gpus, "aws.amazon.com/neuron": self.neuron_chips}


INSTANCE_TYPES = {
    "m7i.2xlarge": Node(8, 32), "m7i.4xlarge": Node(16, 64), "m7i.8xlarge": Node(32, 128),
    "g6e.2xlarge": Node(8, 64, gpus=1), "g6e.4xlarge": Node(16, 128, gpus=1),
    "trn1.32xlarge": Node(128, 512, neuron_chips=16, cores_per_chip=2),
}
UNITS = {"Ki": 2**-20, "Mi": 2**-10, "Gi": 1, "Ti": 2**10, "": 2**-30}


def quantity(resource: str, value: str | int) -> float:
    """A Kubernetes quantity in CPUs, GiB, or a count."""
    s = str(value)
    if resource == "cpu":
        return float(s[:-1]) / 1000 if s.endswith("m") else float(s)
    if resource == "memory":
        number, unit = re.fullmatch(r"([\d.]+)([KMGT]i)?", s).groups()  # type: ignore[union-attr]
        return float(number) * UNITS[unit or ""]
    return float(s)


def pod_total(containers: list[dict], kind: str) -> dict[str, float]:
    total: dict[str, float] = {}
    for c in containers:
        for r, v in c.get("resources", {}).get(kind, {}).items():
            total[r] = total.get(r, 0) + quantity(r, v)
    return total


NODEPOOLS = {d["metadata"]["name"]: d for w, d in DOCS if d["kind"] == "NodePool"}
PODS = [p for _, d in DOCS for p in pod_specs(d)]


@pytest.mark.parametrize("label,pod,extra", PODS, ids=[p[0] for p in PODS])
def test_every_pod_fits_every_instance_type_of_its_node_pool(label: str, pod: dict,
                                                             extra: list) -> None:
    pool_name = pod.get("nodeSelector", {}).get("karpenter.sh/nodepool")
    assert pool_name in NODEPOOLS, f"{label}: nodeSelector names no NodePool ({pool_name})"
    pool = NODEPOOLS[pool_name]["spec"]["template"]["spec"]
    (types,) = [r["values"] for r in pool["requirements"]
                if r["key"] == "node.kubernetes.io/instance-type"]
    containers = pod["containers"] + extra
    for kind in ("requests", "limits"):
        need = pod_total(containers, kind)
        for t in types:
            have = INSTANCE_TYPES[t].allocatable()
            short = {r: (v, have.get(r, 0)) for r, v in need.items() if v > have.get(r, 0)}
            assert not short, f"{label}: {kind} exceed {t} ({pool_name}): {short}"
    tolerated = {t["key"] for t in pod.get("tolerations", [])}
    assert {t["key"] for t in pool.get("taints", [])} <= tolerated, f"{label}: taints"


@pytest.mark.parametrize("doc", RAY_DOCS, ids=describe)
def test_accelerators_are_requested_as_ray_sees_them(doc: dict) -> None:
    """A GPU pod asks for as many GPUs as it limits (Kubernetes requires it), and a Trainium
    pod tells Ray as many `neuron_cores` as its chips hold."""
    for spec in cluster_specs(doc):
        for name, group in ray_groups(spec):
            res = group["template"]["spec"]["containers"][0]["resources"]
            for r in ("nvidia.com/gpu", "aws.amazon.com/neuron"):
                assert res.get("requests", {}).get(r) == res.get("limits", {}).get(r)
            chips = int(res.get("limits", {}).get("aws.amazon.com/neuron", 0))
            if not chips:
                continue
            pool = NODEPOOLS[group["template"]["spec"]["nodeSelector"]["karpenter.sh/nodepool"]]
            (types,) = [r["values"] for r in pool["spec"]["template"]["spec"]["requirements"]
                        if r["key"] == "node.kubernetes.io/instance-type"]
            declared = json.loads(json.loads(group["rayStartParams"]["resources"]))
            for t in types:
                cores = chips * INSTANCE_TYPES[t].cores_per_chip
                assert declared == {"neuron_cores": cores}, f"{describe(doc)} {name} on {t}"


# What KubeRay's controller refuses beyond the schema (ray-operator's utils/validation.go).
NAME_LIMITS = {"RayCluster": 53, "RayJob": 47, "RayService": 47}


@pytest.mark.parametrize("doc", RAY_DOCS, ids=describe)
def test_kuberay_accepts_the_names_and_the_suspended_jobs(doc: dict) -> None:
    name = doc["metadata"]["name"]
    assert re.fullmatch(r"[a-z]([-a-z0-9]*[a-z0-9])?", name), f"{name}: not a DNS-1035 label"
    assert len(name) <= NAME_LIMITS[doc["kind"]], f"{name}: KubeRay appends a suffix"
    if doc["spec"].get("suspend"):
        assert doc["spec"]["shutdownAfterJobFinishes"], f"{name}: a suspended RayJob must "
        "shut its cluster down when it finishes"
