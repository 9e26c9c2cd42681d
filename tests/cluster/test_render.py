"""cluster/render.py: the committed manifests are what groups.yaml and serve/config.yaml give,
the RayService embeds the Serve config unchanged, and each RayJob's command line parses with
its flow's own flags."""

from __future__ import annotations

import re
import shlex
from pathlib import Path

import pytest
import yaml

from cluster import render
from tests.cluster.helpers import CLUSTER, build, load_docs
from tests.helpers import REPO


def test_committed_manifests_are_rendered_from_their_sources() -> None:
    assert render.stale(render.render()) == [], "run `python -m cluster.render`"
    assert render.main(["--check"]) == 0


def test_the_rayservice_embeds_the_repositorys_serve_config() -> None:
    (service,) = load_docs(CLUSTER / "base" / "ray-service.yaml")
    embedded = yaml.safe_load(service["spec"]["serveConfigV2"])
    assert embedded == yaml.safe_load(render.SERVE_CONFIG.read_text())


def test_a_changed_serve_config_makes_the_rayservice_stale(tmp_path: Path) -> None:
    changed = tmp_path / "config.yaml"
    config = yaml.safe_load(render.SERVE_CONFIG.read_text())
    config["applications"][0]["deployments"][0]["max_ongoing_requests"] += 1
    changed.write_text(yaml.safe_dump(config))
    stale = render.stale(render.render(serve_path=changed))
    assert stale == [CLUSTER / "base" / "ray-service.yaml"]


def test_a_serve_config_that_does_not_parse_is_refused(tmp_path: Path) -> None:
    broken = tmp_path / "config.yaml"
    broken.write_text("applications: [\n")
    with pytest.raises(yaml.YAMLError):
        render.render(serve_path=broken)


def test_a_worker_group_no_manifest_uses_is_refused(tmp_path: Path) -> None:
    groups = yaml.safe_load(render.GROUPS.read_text())
    groups["workers"]["tpu"] = groups["workers"]["cpu"]
    path = tmp_path / "groups.yaml"
    path.write_text(yaml.safe_dump(groups))
    with pytest.raises(ValueError, match=r"worker groups \['tpu'\].*used by no manifest"):
        render.render(groups_path=path)


def test_every_batch_flow_has_a_suspended_rayjob() -> None:
    from flows.cli import COMMANDS

    jobs = {doc["metadata"]["labels"]["app.kubernetes.io/component"]: doc
            for doc in build(CLUSTER / "base") if doc["kind"] == "RayJob"}
    batch = set(COMMANDS) - {"serve", "promote", "rollback", "demo"}
    assert batch <= {name.split("-")[0] for name in jobs}
    for name, job in jobs.items():
        assert job["spec"]["entrypoint"].startswith(f"python -m flows.{name.split('-')[0]} ")
        assert job["spec"]["suspend"] is True, f"{name}: applying an overlay would start it"


@pytest.mark.parametrize("flow", [f.name for f in render.FLOWS])
def test_each_rayjob_command_line_parses_with_its_flows_flags(flow: str) -> None:
    """The entrypoint, as the head's shell expands it with the ConfigMap's locations, is
    accepted by the flow's own parser, and every object-store URI goes to a flag the flow reads
    or writes through the object store (its LOCATIONS)."""
    from flows.cli import flow as flow_module
    from flows.cli import module_parser

    (storage,) = [d for d in build(CLUSTER / "base") if d["metadata"]["name"] ==
                  "warmstart-storage"]
    (job,) = [d for d in build(CLUSTER / "base") if d["metadata"]["name"] ==
              f"warmstart-{flow}"]

    def expand(word: str) -> str:
        def var(m: re.Match[str]) -> str:
            assert m[1] in storage["data"], f"{flow}: ${m[1]} is not in ConfigMap " \
                                            "warmstart-storage"
            return str(storage["data"][m[1]])
        return re.sub(r"\$\{?(\w+)\}?", var, word)

    python, dash_m, module, *argv = [expand(w) for w in shlex.split(job["spec"]["entrypoint"])]
    name = module.removeprefix("flows.")
    try:
        args = module_parser(name).parse_args(argv)
    except SystemExit:
        pytest.fail(f"`{job['spec']['entrypoint']}` does not parse with flows.{name}'s flags")
    locations = getattr(flow_module(name), "LOCATIONS", {})
    uris = {k for k, v in vars(args).items() if isinstance(v, str | Path)
            and re.match(r"s3:/", str(v))}
    assert uris <= set(locations), (
        f"flows.{name} takes {sorted(uris - set(locations))} as a local path only "
        f"(LOCATIONS: {sorted(locations)}); the RayJob passes an s3:// URI")


def test_the_embedded_serve_config_works_in_a_cluster() -> None:
    """Serve's proxy (HAProxy in fast mode) must listen beyond the head pod's loopback for the
    RayService's Service to reach it, and every replica, on any node, must find the artifacts:
    an object-store URI, not a folder of the machine the config was written on."""
    config = yaml.safe_load(render.SERVE_CONFIG.read_text())
    assert config["http_options"]["host"] in ("0.0.0.0", "::")
    for app in config["applications"]:
        assert re.match(r"s3://", str(app["args"]["artifacts"])), app["args"]["artifacts"]


def test_the_serve_configs_redis_is_the_redis_service() -> None:
    """Every redis:// URL the Serve config names is a Service of base on its port."""
    urls = re.findall(r"redis://([\w.-]+):(\d+)", render.SERVE_CONFIG.read_text())
    services = {(d["metadata"]["name"], p["port"]) for d in build(CLUSTER / "base")
                if d["kind"] == "Service" for p in d["spec"]["ports"]}
    assert urls and {(host, int(port)) for host, port in urls} <= services


def test_the_renderer_runs_as_a_script() -> None:
    import subprocess
    import sys

    out = subprocess.run([sys.executable, str(REPO / "cluster" / "render.py"), "--check"],
                         capture_output=True, text=True, cwd=REPO)
    assert out.returncode == 0, out.stderr
