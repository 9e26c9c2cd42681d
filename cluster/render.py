"""Render the KubeRay manifests from their two sources: the Ray node groups
(`cluster/groups.yaml`) and the Serve config (`serve/config.yaml`).

A RayCluster, RayJob and RayService each carry a whole cluster spec, and the RayService carries
the Serve config as a string (`serveConfigV2`). Written by hand, those would be ten copies of
the same pods and a copy of the Serve config that drift apart; rendered, each manifest is still
a complete, plain KubeRay manifest to read and `kubectl apply`, and `--check` (run by
tests/cluster) fails when one differs from what its sources give.

    python -m cluster.render            # write the manifests
    python -m cluster.render --check    # exit 1, naming the stale files, when one differs
"""

from __future__ import annotations

import argparse
import copy
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

REPO = Path(__file__).resolve().parent.parent
CLUSTER = REPO / "cluster"
GROUPS = CLUSTER / "groups.yaml"
SERVE_CONFIG = REPO / "serve" / "config.yaml"

NAME = "warmstart"
HEADER = ("# Rendered by `python -m cluster.render` from cluster/groups.yaml{serve}: edit those\n"
          "# and render again; tests/cluster fails when this file differs from its sources.\n")


@dataclass(frozen=True)
class Flow:
    """A batch flow as a RayJob: its command line and the worker groups it needs.

    `args` may name the storage locations of ConfigMap warmstart-storage ($WARMSTART_DATA,
    ...): Ray runs the entrypoint through a shell on the head, whose environment has them.
    """

    name: str
    args: str
    groups: tuple[str, ...] = ("cpu",)
    about: str = ""

    @property
    def entrypoint(self) -> str:
        module = self.name.split("-")[0]  # expand-neuron runs flows.expand
        return f"python -m flows.{module} {self.args}".strip()


FLOWS: tuple[Flow, ...] = (
    Flow("generate", '--out "$WARMSTART_DATA" --scale small',
         about="synthetic retail data with ground truth, into the data bucket"),
    Flow("load", 'movielens --src "$WARMSTART_SOURCE" --out "$WARMSTART_DATA"',
         about="an external dataset (MovieLens-100K here) into the data layout"),
    Flow("train", '--data "$WARMSTART_DATA" --artifacts "$WARMSTART_ARTIFACTS" '
                  '--accelerator gpu --workers 2',
         groups=("cpu", "gpu"),
         about="full training on Ray Train, one GPU per worker; publishes a version"),
    Flow("finetune", '--data "$WARMSTART_DATA" --artifacts "$WARMSTART_ARTIFACTS" '
                     '--events redis://redis:6379/0',
         about="the daily flow: the served events drained from Redis, then new day(s) + replay"),
    Flow("evaluate", '--data "$WARMSTART_DATA" --artifacts "$WARMSTART_ARTIFACTS"',
         about="test-day quality of LATEST beside popularity and the oracle"),
    Flow("expand", '--data "$WARMSTART_DATA" --out "$WARMSTART_ARTIFACTS/interests" '
                   '--llm-backend vllm --llm-model llama-3.1-8b '
                   '--llm-path /models/Llama-3.1-8B-Instruct --accelerator gpu',
         groups=("cpu", "gpu"),
         about="LLM interests for sparse users: vLLM on GPUs, tensor_parallel_size 1 per engine"),
    Flow("expand-neuron", '--data "$WARMSTART_DATA" --out "$WARMSTART_ARTIFACTS/interests" '
                          '--llm-backend vllm --llm-model llama-3.1-8b '
                          '--llm-path /models/Llama-3.1-8B-Instruct --accelerator neuron',
         groups=("cpu", "neuron"),
         about="the same flow on Trainium: vLLM's Neuron plugin, 8 NeuronCores per engine"),
    Flow("experiment", '--data "$WARMSTART_DATA" --out "$WARMSTART_ARTIFACTS/experiment"',
         about="LLM x encoder pairings on cold users (SmolLM2 x MiniLM on CPU by default)"),
)


class _Dumper(yaml.SafeDumper):
    """Block style, keys in the order written, multi-line strings as literal blocks, and no
    anchors: each pod spec is written out in full, as a reader of one manifest expects."""

    def ignore_aliases(self, data: Any) -> bool:
        return True


def _str(dumper: yaml.SafeDumper, value: str) -> yaml.ScalarNode:
    style = "|" if "\n" in value else None
    return dumper.represent_scalar("tag:yaml.org,2002:str", value, style=style)


_Dumper.add_representer(str, _str)


def dump(doc: dict[str, Any], header: str) -> str:
    return header + yaml.dump(doc, Dumper=_Dumper, sort_keys=False, width=1000)


def load_groups(path: Path = GROUPS) -> dict[str, Any]:
    groups = yaml.safe_load(path.read_text())
    unknown = set(groups["workers"]) - {f for flow in FLOWS for f in flow.groups}
    if unknown:
        raise ValueError(f"worker groups {sorted(unknown)} in {path} are used by no manifest")
    return groups


def cluster_spec(groups: dict[str, Any], workers: tuple[str, ...]) -> dict[str, Any]:
    """A RayClusterSpec with the head and the named worker groups, autoscaled (v2), with
    token authentication."""
    missing = [w for w in workers if w not in groups["workers"]]
    if missing:
        raise ValueError(f"no worker group {missing} in {GROUPS.relative_to(REPO)}; "
                         f"it has {sorted(groups['workers'])}")
    return copy.deepcopy({
        "rayVersion": groups["rayVersion"],
        "authOptions": groups["authOptions"],
        "enableInTreeAutoscaling": True,
        "autoscalerOptions": groups["autoscalerOptions"],
        "headGroupSpec": groups["head"],
        "workerGroupSpecs": [groups["workers"][w] for w in workers],
    })


def ray_cluster(groups: dict[str, Any]) -> dict[str, Any]:
    """The development cluster: every node group, for `ray job submit` and the dashboard."""
    return {"apiVersion": "ray.io/v1", "kind": "RayCluster",
            "metadata": {"name": NAME, "labels": {"app.kubernetes.io/name": NAME}},
            "spec": cluster_spec(groups, tuple(groups["workers"]))}


def ray_job(flow: Flow, groups: dict[str, Any]) -> dict[str, Any]:
    """One flow on a cluster of its own, deleted when the flow ends. Created suspended, so that
    applying an overlay starts no flow; `kubectl patch rayjob ... suspend=false` runs it."""
    return {"apiVersion": "ray.io/v1", "kind": "RayJob",
            "metadata": {"name": f"{NAME}-{flow.name}",
                         "labels": {"app.kubernetes.io/name": NAME,
                                    "app.kubernetes.io/component": flow.name}},
            "spec": {"entrypoint": flow.entrypoint,
                     "suspend": True,
                     "shutdownAfterJobFinishes": True,
                     "ttlSecondsAfterFinished": 3600,
                     "backoffLimit": 0,
                     "rayClusterSpec": cluster_spec(groups, flow.groups)}}


def ray_service(groups: dict[str, Any], serve_config: str) -> dict[str, Any]:
    """The Serve app on the head and the CPU group, its config embedded verbatim."""
    yaml.safe_load(serve_config)  # a config that does not parse fails here, not in the cluster
    return {"apiVersion": "ray.io/v1", "kind": "RayService",
            "metadata": {"name": NAME, "labels": {"app.kubernetes.io/name": NAME}},
            "spec": {"serveConfigV2": serve_config,
                     "rayClusterConfig": cluster_spec(groups, ("cpu",))}}


def render(groups_path: Path = GROUPS, serve_path: Path = SERVE_CONFIG) -> dict[Path, str]:
    """Every rendered manifest: its path and its text."""
    groups = load_groups(groups_path)
    serve_src = f" and {serve_path.relative_to(REPO)}" if serve_path.is_relative_to(REPO) \
        else f" and {serve_path}"
    out = {CLUSTER / "overlays" / "dev" / "ray-cluster.yaml":
           dump(ray_cluster(groups), HEADER.format(serve="")),
           CLUSTER / "base" / "ray-service.yaml":
           dump(ray_service(groups, serve_path.read_text()), HEADER.format(serve=serve_src))}
    for flow in FLOWS:
        header = HEADER.format(serve="") + f"# warmstart {flow.name}: {flow.about}\n"
        out[CLUSTER / "base" / f"ray-job.{flow.name}.yaml"] = dump(ray_job(flow, groups), header)
    return out


def stale(rendered: dict[Path, str]) -> list[Path]:
    """The files whose text differs from what their sources give (or that are missing)."""
    return [p for p, text in rendered.items() if not p.exists() or p.read_text() != text]


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m cluster.render", description=__doc__.split("\n")[0])
    p.add_argument("--check", action="store_true",
                   help="write nothing; exit 1 when a manifest differs from its sources")
    args = p.parse_args(argv)
    rendered = render()
    if args.check:
        old = stale(rendered)
        for path in old:
            print(f"{path.relative_to(REPO)} is stale: run `python -m cluster.render`",
                  file=sys.stderr)
        return 1 if old else 0
    for path, text in rendered.items():
        path.write_text(text)
        print(path.relative_to(REPO))
    return 0


if __name__ == "__main__":
    sys.exit(main())
