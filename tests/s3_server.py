"""A local S3 server (moto's server mode, from the dev extra) on a free port, owned by one
test module: its endpoint and credentials as the AWS_* environment every S3 client reads
(pyarrow's S3 filesystem, Ray's workers started under it)."""

from __future__ import annotations

import subprocess
import sys
import time
import urllib.request

from tests.helpers import free_port


class S3Server:
    def __init__(self) -> None:
        self.port = free_port()
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(self.port)],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + 30
        while True:
            try:
                urllib.request.urlopen(self.endpoint, timeout=1)
                break
            except OSError:
                if self.proc.poll() is not None or time.monotonic() > deadline:
                    self.stop()
                    raise RuntimeError(f"moto's S3 server did not start on {self.port}; "
                                       "install the dev extra (moto[server])") from None
                time.sleep(0.2)

    @property
    def endpoint(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def env(self) -> dict[str, str]:
        return {"AWS_ACCESS_KEY_ID": "test", "AWS_SECRET_ACCESS_KEY": "test",
                "AWS_DEFAULT_REGION": "us-east-1", "AWS_ENDPOINT_URL": self.endpoint}

    def bucket(self, name: str) -> str:
        """Create bucket `name`; returns its URI."""
        import pyarrow.fs as pafs

        fs = pafs.S3FileSystem(access_key="test", secret_key="test", region="us-east-1",
                               endpoint_override=self.endpoint, scheme="http",
                               allow_bucket_creation=True)
        fs.create_dir(name)
        return f"s3://{name}"

    def stop(self) -> None:
        self.proc.terminate()
        self.proc.wait(10)
