"""The flows as Ray jobs on a running cluster: a `ray start --head` of this test's own (token
auth, free ports, stopped by its process group, never `ray stop`), jobs submitted with
`ray job submit --working-dir`, as on a KubeRay cluster. The second test keeps data and
artifacts on an S3 server (moto) and serves from there."""

from __future__ import annotations

import json
import os
import re
import secrets
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import pyarrow.fs as pafs
import pytest

from bench.redis_server import RedisServer
from flows.runtime import SERVE_FAST_ENV
from tests.helpers import free_port
from tests.s3_server import S3Server
from train import storage
from train.artifacts import resolve, verify

pytestmark = [pytest.mark.ray, pytest.mark.slow]
REPO = Path(__file__).resolve().parents[2]
RAY = str(Path(sys.executable).parent / "ray")


@dataclass
class Cluster:
    address: str  # the dashboard's, where jobs are submitted
    env: dict[str, str]  # a client's environment: the token, the S3 endpoint
    cache: Path  # where the cluster's processes mirror URIs
    walls: dict[str, float] = field(default_factory=dict)

    def ray(self, *args: str, timeout: float = 900) -> subprocess.CompletedProcess[str]:
        return subprocess.run([RAY, *args], env=self.env, capture_output=True, text=True,
                              timeout=timeout)

    def submit(self, name: str, *flow_args: str, wait: bool = True) -> str:
        """Submit `python -m flows.<flow_args[0]> ...` from the repository; returns the job's
        output (wait) or its id (no wait)."""
        t0 = time.perf_counter()
        r = self.ray("job", "submit", "--address", self.address, "--working-dir", str(REPO),
                     *([] if wait else ["--no-wait"]), "--", "python", "-m",
                     f"flows.{flow_args[0]}", *flow_args[1:])
        out = r.stdout + r.stderr
        assert r.returncode == 0, out[-4000:]
        job = re.search(r"raysubmit_\w+", out)
        assert job, out[-2000:]
        if not wait:
            return job.group(0)
        self.walls[name] = time.perf_counter() - t0
        status = self.ray("job", "status", "--address", self.address, job.group(0))
        said = re.sub(r"\x1b\[[0-9;]*m", "", status.stdout + status.stderr)
        assert f"Job '{job.group(0)}' succeeded" in said, (said, out[-4000:])
        return out


@pytest.fixture(scope="module")
def s3() -> Iterator[S3Server]:
    server = S3Server()
    yield server
    server.stop()


def stop_head(head: subprocess.Popen[bytes]) -> None:
    os.killpg(head.pid, signal.SIGTERM)  # the head and every process it started
    try:
        head.wait(60)  # Ray drains for up to 30 s first
    except subprocess.TimeoutExpired:
        os.killpg(head.pid, signal.SIGKILL)
        head.wait(10)


def start_head(folder: Path, temp: str, env: dict[str, str]
               ) -> tuple[subprocess.Popen[bytes], str]:
    """A `ray start --head` on free ports; returns it and its job API's address once that
    answers. `temp`, Ray's session folder, must be short: Ray's sockets live there, and a Unix
    socket's path may not exceed 107 bytes (a deep pytest folder does, and the dashboard then
    fails to start)."""
    gcs, dashboard, client, agent = (free_port() for _ in range(4))
    with (folder / "head.log").open("w") as log:
        head = subprocess.Popen(
            [RAY, "start", "--head", "--block", f"--port={gcs}",
             f"--dashboard-port={dashboard}", "--dashboard-host=127.0.0.1",
             f"--ray-client-server-port={client}", f"--dashboard-agent-listen-port={agent}",
             "--num-cpus=4", f"--temp-dir={temp}"],
            env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    address = f"http://127.0.0.1:{dashboard}"
    deadline = time.monotonic() + 180
    while subprocess.run([RAY, "job", "list", "--address", address], env=env,
                         capture_output=True, timeout=60).returncode != 0:
        if head.poll() is not None or time.monotonic() > deadline:
            if head.poll() is None:
                stop_head(head)
            raise RuntimeError("the head did not start:\n"
                               + (folder / "head.log").read_text()[-3000:])
        time.sleep(2)
    return head, address


@pytest.fixture(scope="module")
def cluster(s3: S3Server, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    root = tmp_path_factory.mktemp("cluster")
    env = os.environ | s3.env | SERVE_FAST_ENV | {
        "RAY_AUTH_MODE": "token", "RAY_AUTH_TOKEN": secrets.token_hex(16),
        "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}",
        "RAY_SERVE_HAPROXY_STATS_PORT": str(free_port()),
        "RAY_SERVE_HAPROXY_METRICS_PORT": str(free_port()),
        storage.CACHE_ENV: str(root / "cache")}
    env.pop("RAY_ADDRESS", None)
    temp = tempfile.mkdtemp(prefix="ws-ray-", dir="/tmp")
    try:
        head, address = start_head(root, temp, env)
        c = Cluster(address, env, root / "cache")
        try:
            yield c
        finally:
            print("\nray job wall time per flow (s):", json.dumps(
                {k: round(v, 1) for k, v in c.walls.items()}))
            stop_head(head)
    finally:
        shutil.rmtree(temp, ignore_errors=True)


def test_generate_train_and_expand_run_as_jobs(cluster: Cluster, tmp_path: Path) -> None:
    data, artifacts = tmp_path / "data", tmp_path / "artifacts"
    out = cluster.submit("generate", "generate", "--scale", "tiny", "--out", str(data))
    assert "impressions" in out
    assert (data / "items.parquet").exists()
    assert len(list((data / "interactions").glob("day=*"))) == 14

    cluster.submit("train", "train", "--data", str(data), "--artifacts", str(artifacts),
                   "--epochs", "1")
    manifest = verify(resolve(artifacts))
    assert manifest["version"] == (artifacts / "LATEST").read_text().strip()

    cluster.submit("expand", "expand", "--data", str(data), "--out",
                   str(artifacts / "interests"), "--limit", "4", "--llm-batch-size", "4")
    stats = json.loads((artifacts / "interests" / "stats.json").read_text())
    assert stats["users"] == 4, stats


def test_flows_keep_data_and_artifacts_on_s3_and_serve_from_there(
        cluster: Cluster, s3: S3Server, tmp_path: Path) -> None:
    bucket = s3.bucket("warmstart")
    data, artifacts = f"{bucket}/data", f"{bucket}/artifacts"
    cluster.submit("generate (s3)", "generate", "--scale", "tiny", "--out", data)
    cluster.submit("train (s3)", "train", "--data", data, "--artifacts", artifacts,
                   "--epochs", "1")

    fs = pafs.S3FileSystem(access_key="test", secret_key="test", region="us-east-1",
                           endpoint_override=s3.endpoint, scheme="http")
    listed = [i.path for i in fs.get_file_info(pafs.FileSelector("warmstart", recursive=True))
              if i.type == pafs.FileType.File]
    days = {p.split("/")[3] for p in listed if p.startswith("warmstart/data/interactions/")}
    assert len(days) == 14 and "warmstart/data/items.parquet" in listed
    with fs.open_input_stream("warmstart/artifacts/LATEST") as f:
        version = f.read().decode().strip()
    assert f"warmstart/artifacts/{version}/manifest.json" in listed
    assert not [p for p in listed if "/_runs/" in p]  # checkpoints dropped after training
    # Ray Train wrote its checkpoints to the URI, not into the driver's mirror
    mirror = cluster.cache / "s3" / "warmstart" / "artifacts"
    assert (mirror / version).is_dir() and not (mirror / "_runs").exists()

    redis = RedisServer(tmp_path / "redis", bloom=True)
    port = free_port()
    job = cluster.submit("serve (s3)", "serve", "--artifacts", artifacts, "--redis",
                         redis.url, "--port", str(port), wait=False)
    try:
        t0, deadline = time.perf_counter(), time.monotonic() + 300
        while True:
            try:
                if httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            logs = cluster.ray("job", "logs", "--address", cluster.address, job)
            assert time.monotonic() < deadline, logs.stdout[-3000:]
            time.sleep(3)
        cluster.walls["serve (s3), until healthy"] = time.perf_counter() - t0
        r = httpx.post(f"http://127.0.0.1:{port}/recommend", json={"user_id": "u000001"},
                       timeout=30)
        assert r.status_code == 200, r.text
        assert r.json()["model_version"] == version and len(r.json()["items"]) == 10
    finally:
        cluster.ray("job", "stop", "--address", cluster.address, job)
        redis.stop()
        shutil.rmtree(tmp_path / "redis", ignore_errors=True)
