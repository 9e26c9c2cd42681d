"""The manifests under cluster/, read and validated offline.

KubeRay kinds are checked against the CRD schemas beside the checkout (`../shared/kuberay-crds`)
with jsonschema, after the schemas' defaults are applied (as the API server does before it
validates) and with unknown fields rejected (as `kubectl apply`'s strict field validation
does; a CRD schema alone lets a misspelt field through). Built-in kinds are checked with
kubernetes-validate's bundled schemas for one Kubernetes version. Overlays are built by a small
subset of Kustomize (resources, namespace, labels, images, strategic-merge and JSON 6902
patches): enough to validate what `kubectl apply -k` would send, without the binary.
"""

from __future__ import annotations

import copy
import json
from collections.abc import Iterator
from functools import cache
from pathlib import Path
from typing import Any

import jsonschema
import yaml

from tests.helpers import REPO, SHARED

CLUSTER = REPO / "cluster"
CRDS = SHARED / "kuberay-crds"
KUBERAY_KINDS = {"RayCluster": "rayclusters", "RayJob": "rayjobs", "RayService": "rayservices"}
# A release kubernetes-validate 1.37 bundles schemas for, and one EKS supports.
K8S_VERSION = "1.33"
CLUSTER_SCOPED = {"Namespace", "NodePool"}
OVERLAYS = ("dev", "prod")

Doc = dict[str, Any]


class ManifestError(ValueError):
    """A manifest the API server would refuse; the message names the resource and the path."""


def load_docs(path: Path) -> list[Doc]:
    return [d for d in yaml.safe_load_all(path.read_text()) if d]


def describe(doc: Doc) -> str:
    return f"{doc.get('kind')}/{doc.get('metadata', {}).get('name')}"


# --- Kustomize, the parts cluster/ uses -------------------------------------------------------

def build(folder: Path) -> list[Doc]:
    """What `kustomize build folder` gives, for the features cluster/ uses; raises when a file
    is missing or a patch matches nothing (kustomize fails there too)."""
    k = yaml.safe_load((folder / "kustomization.yaml").read_text())
    docs: list[Doc] = []
    for entry in k.get("resources", []):
        path = folder / entry
        if not path.exists():
            raise ManifestError(f"{folder / 'kustomization.yaml'}: resource {entry} not found")
        docs += build(path) if path.is_dir() else load_docs(path)
    for patch in k.get("patches", []):
        docs = _patch(folder, docs, patch)
    for doc in docs:
        meta = doc.setdefault("metadata", {})
        if "namespace" in k and doc["kind"] not in CLUSTER_SCOPED:
            meta["namespace"] = k["namespace"]
        for label in k.get("labels", []):
            meta.setdefault("labels", {}).update(label["pairs"])
        for image in k.get("images", []):
            _set_image(doc, image)
    return docs


def _patch(folder: Path, docs: list[Doc], patch: Doc) -> list[Doc]:
    if "path" in patch:
        path = folder / patch["path"]
        if not path.exists():
            raise ManifestError(f"{folder / 'kustomization.yaml'}: patch {patch['path']} not found")
        for p in load_docs(path):
            target = _find(docs, p["kind"], p["metadata"]["name"], path)
            if p.get("$patch") == "delete":
                docs = [d for d in docs if d is not target]
            else:
                _merge(target, p)
        return docs
    t = patch["target"]
    target = _find(docs, t["kind"], t["name"], folder / "kustomization.yaml")
    for op in yaml.safe_load(patch["patch"]):
        *parents, last = [int(s) if s.isdigit() else s for s in op["path"].strip("/").split("/")]
        node: Any = target
        for step in parents:
            node = node[step]
        if op["op"] == "replace" and last not in (node if isinstance(node, dict) else
                                                 range(len(node))):
            raise ManifestError(f"{folder}: JSON patch replaces missing {op['path']}")
        if op["op"] in ("replace", "add"):
            node[last] = op["value"]
        elif op["op"] == "remove":
            del node[last]
        else:
            raise NotImplementedError(op["op"])
    return docs


def _find(docs: list[Doc], kind: str, name: str, where: Path) -> Doc:
    for d in docs:
        if d["kind"] == kind and d["metadata"]["name"] == name:
            return d
    raise ManifestError(f"{where}: patch target {kind}/{name} is not among the resources")


def _merge(into: Doc, patch: Doc) -> None:
    for key, value in patch.items():
        if isinstance(value, dict) and isinstance(into.get(key), dict):
            _merge(into[key], value)
        else:
            into[key] = value


def _set_image(node: Any, image: Doc) -> None:
    """Kustomize's `images:` on every `containers`/`initContainers` list anywhere in the doc."""
    if isinstance(node, list):
        for item in node:
            _set_image(item, image)
    elif isinstance(node, dict):
        for key, value in node.items():
            if key in ("containers", "initContainers"):
                for c in value:
                    name, _, tag = c["image"].partition(":")
                    if name == image["name"]:
                        c["image"] = f"{image.get('newName', name)}:{image.get('newTag', tag)}"
            else:
                _set_image(value, image)


def all_docs() -> Iterator[tuple[str, Doc]]:
    """Every resource a user can apply, labelled by where it comes from: the overlays as built,
    and the Karpenter NodePools."""
    for overlay in OVERLAYS:
        for doc in build(CLUSTER / "overlays" / overlay):
            yield f"overlays/{overlay}", doc
    for doc in build(CLUSTER / "karpenter"):
        yield "karpenter", doc


# --- validation --------------------------------------------------------------------------------

@cache
def _crd_schema(kind: str) -> Doc:
    crd = json.loads((CRDS / f"ray.io_{KUBERAY_KINDS[kind]}.schema.json").read_text())
    return dict(crd["versions"]["v1"])


@cache
def _crd_validator(kind: str) -> jsonschema.protocols.Validator:
    return jsonschema.Draft7Validator(_strict(_crd_schema(kind)))


def _strict(schema: Doc) -> Doc:
    """The schema with unknown fields refused wherever the API server would prune them."""
    schema = copy.deepcopy(schema)

    def walk(s: Any) -> None:
        if isinstance(s, dict):
            if ("properties" in s and "additionalProperties" not in s
                    and not s.get("x-kubernetes-preserve-unknown-fields")):
                s["additionalProperties"] = False
            for v in s.values():
                walk(v)
        elif isinstance(s, list):
            for v in s:
                walk(v)

    walk(schema)
    # apiVersion, kind and metadata are checked by the API server itself, not the CRD schema
    schema["properties"] = {"apiVersion": {"type": "string"}, "kind": {"type": "string"},
                            "metadata": {"type": "object"}, **schema.get("properties", {})}
    return schema


def with_defaults(instance: Any, schema: Doc) -> Any:
    """`instance` with the schema's `default`s filled in where a field is absent, inside every
    object that is present (as the API server defaults a custom resource)."""
    if isinstance(instance, dict) and "properties" in schema:
        for key, sub in schema["properties"].items():
            if key not in instance and "default" in sub:
                instance[key] = copy.deepcopy(sub["default"])
            if key in instance:
                with_defaults(instance[key], sub)
    elif isinstance(instance, list) and isinstance(schema.get("items"), dict):
        for item in instance:
            with_defaults(item, schema["items"])
    return instance


def json_path(path: Any) -> str:
    out = ""
    for step in path:
        out += f"[{step}]" if isinstance(step, int) else f".{step}" if out else str(step)
    return out or "(top level)"


def validate(doc: Doc) -> None:
    """Raise ManifestError naming each field the API server would refuse in `doc`."""
    kind = doc.get("kind")
    if kind in KUBERAY_KINDS:
        if doc.get("apiVersion") != "ray.io/v1":
            raise ManifestError(f"{describe(doc)}: apiVersion {doc.get('apiVersion')!r}, "
                                "expected ray.io/v1")
        instance = with_defaults(copy.deepcopy(doc), _crd_schema(kind))
        errors = sorted(_crd_validator(kind).iter_errors(instance),
                        key=lambda e: list(map(str, e.absolute_path)))
        if errors:
            raise ManifestError("\n".join(f"{describe(doc)}: {json_path(e.absolute_path)}: "
                                          f"{e.message}" for e in errors))
    elif kind == "NodePool":
        _validate_nodepool(doc)
    else:
        import kubernetes_validate

        try:
            kubernetes_validate.validate(doc, K8S_VERSION, strict=True)
        except kubernetes_validate.ValidationError as e:
            raise ManifestError(f"{describe(doc)}: {json_path(e.absolute_path)}: "
                                f"{e.message}") from None
        except kubernetes_validate.SchemaNotFoundError as e:
            raise ManifestError(e.message) from None


TAINT_EFFECTS = {"NoSchedule", "PreferNoSchedule", "NoExecute"}
OPERATORS = {"In", "NotIn", "Exists", "DoesNotExist", "Gt", "Lt"}


def _validate_nodepool(doc: Doc) -> None:
    """Karpenter's NodePool (karpenter.sh/v1): no schema is available offline, so the fields
    cluster/karpenter uses are checked by hand."""
    problems = []
    if doc.get("apiVersion") != "karpenter.sh/v1":
        problems.append(f"apiVersion: {doc.get('apiVersion')!r}, expected karpenter.sh/v1")
    spec = doc.get("spec", {}).get("template", {}).get("spec", {})
    ref = spec.get("nodeClassRef", {})
    if set(ref) != {"group", "kind", "name"}:
        problems.append("spec.template.spec.nodeClassRef: needs group, kind and name")
    for i, r in enumerate(spec.get("requirements", [])):
        if r.get("operator") not in OPERATORS or not r.get("key"):
            problems.append(f"spec.template.spec.requirements[{i}]: key and operator in "
                            f"{sorted(OPERATORS)}")
        if r.get("operator") in ("In", "NotIn") and not r.get("values"):
            problems.append(f"spec.template.spec.requirements[{i}].values: empty")
    for i, t in enumerate(spec.get("taints", [])):
        if t.get("effect") not in TAINT_EFFECTS or not t.get("key"):
            problems.append(f"spec.template.spec.taints[{i}]: key and effect in "
                            f"{sorted(TAINT_EFFECTS)}")
    if problems:
        raise ManifestError("\n".join(f"{describe(doc)}: {p}" for p in problems))


# --- what the manifests hold -------------------------------------------------------------------

def cluster_specs(doc: Doc) -> Iterator[Doc]:
    """The RayClusterSpec a KubeRay resource carries."""
    spec = doc.get("spec", {})
    if doc["kind"] == "RayCluster":
        yield spec
    elif doc["kind"] == "RayJob" and "rayClusterSpec" in spec:
        yield spec["rayClusterSpec"]
    elif doc["kind"] == "RayService":
        yield spec["rayClusterConfig"]


def ray_groups(spec: Doc) -> Iterator[tuple[str, Doc]]:
    """(group name, group) for the head ("head") and each worker group."""
    yield "head", spec["headGroupSpec"]
    for group in spec.get("workerGroupSpecs", []):
        yield group["groupName"], group


def pod_specs(doc: Doc) -> Iterator[tuple[str, Doc, list[Doc]]]:
    """(label, pod spec, extra containers) for every pod a resource makes. The head pod of an
    autoscaled cluster also runs the autoscaler, a container KubeRay adds."""
    for spec in cluster_specs(doc):
        for name, group in ray_groups(spec):
            extra = []
            if name == "head" and spec.get("enableInTreeAutoscaling"):
                extra.append({"name": "autoscaler",
                              "resources": spec.get("autoscalerOptions", {}).get("resources", {})})
            yield f"{describe(doc)} {name}", group["template"]["spec"], extra
    if doc["kind"] in ("Deployment", "StatefulSet"):
        yield describe(doc), doc["spec"]["template"]["spec"], []
